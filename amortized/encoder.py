"""The amortized (branching) encoder: K LSTM stacks of different cost, routed per frame.

Parameters: `{'branches': {name: {'layer_0': ..., ...}, ...}, 'arbitrator': {...}}`. A single
branch is the baseline (dense, pruned or factorized): the same code with no arbitrator.

Per frame t, the arbitrator sees the stacked feature frame and the backlog the simulated device
has pending at that moment, and picks one branch; that branch runs all layers for frame t,
reading and writing the (y, c) state every branch shares per layer, so routing can switch at any
frame. The backlog depends only on earlier decisions and their FLOP costs, so the routing of the
whole utterance is computed first by a cheap scan (arbitrator + latency recursion), and the
stack then runs layer by layer with every branch's input projection hoisted out of the time
loop. Training computes all branches each frame and mixes them with the straight-through hard
Gumbel sample (a one-hot forward, the soft sample's gradient backward); eval uses argmax routing
and still computes every branch; `stream()` runs only the chosen branch (`lax.switch`), with
the weights of `stream_weights()`: sparse branches pruned in groups (`sparse_group`) in the
grouped format of `asr.lstm.to_streaming`, which on one CPU thread costs a fraction of the
masked dense product (element-wise masks stay masked dense: their grouped form is slower).
With the hard sample a branch gets no gradient from the frames routed elsewhere (its weight in
the mix is exactly 0), so a branch chosen for few frames learns from few frames; the option
`gumbel_hard=False` mixes the branches with the soft sample itself in training, so every branch
learns on every frame in proportion to its probability until the annealing makes it one-hot.

The temperature of the arbitrator's softmax anneals from `temperature_start` to
`temperature_end` over `anneal_steps` (geometric), so the routing distribution goes from soft
(70/30 splits) to near-binary (99.99/0.01), as in the article.
"""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from amortized import amortized_loss
from amortized import latency
from amortized import routed_recurrence
from asr import flops as flops_lib
from asr import lstm
from asr import sparsity


@dataclasses.dataclass(frozen=True)
class BranchSpec:
  name: str
  kind: str = 'dense'      # dense | sparse | factorized
  budget: float = 1.0      # fraction of the dense FLOPs of every matrix


def parse_branches(spec: str) -> tuple[BranchSpec, ...]:
  """'slow:dense,fast:sparse:0.3' -> (BranchSpec('slow'), BranchSpec('fast', 'sparse', 0.3))."""
  branches = []
  for item in spec.split(','):
    parts = item.strip().split(':')
    if len(parts) not in (2, 3) or parts[1] not in lstm.KINDS:
      raise ValueError(f'model.encoder.branches: {item!r} is not name:kind[:budget] with kind in '
                       f'{lstm.KINDS}')
    budget = float(parts[2]) if len(parts) == 3 else 1.0
    if not 0 < budget <= 1 or (parts[1] != 'dense' and len(parts) != 3):
      raise ValueError(f'model.encoder.branches: {item!r} needs a budget in (0, 1]')
    branches.append(BranchSpec(parts[0], parts[1], budget))
  names = [b.name for b in branches]
  if len(set(names)) != len(names):
    raise ValueError(f'model.encoder.branches: duplicate branch names in {spec!r}')
  return tuple(branches)


def branch_flops(spec: BranchSpec, input_dim: int, layers: int, units: int, proj: int,
                 sparse_group: int = 0) -> int:
  """Analytic FLOPs of one frame through one branch's whole stack (asr.flops conventions).
  A sparse matrix pruned in groups keeps round(budget * m) rows in every column, so n times
  that many nonzeros (what the grouped product multiplies)."""
  total, dim = 0, input_dim
  out_dim = proj or units
  for _ in range(layers):
    shapes = {'input': (dim, 4 * units), 'recurrent': (out_dim, 4 * units)}
    if proj:
      shapes['proj'] = (units, proj)
    kinds = {k: spec.kind for k in shapes}
    if sparse_group:
      nnz = {k: n * sparsity.rounded_count(spec.budget, m) for k, (m, n) in shapes.items()}
    else:
      nnz = {k: int(round(spec.budget * m * n)) for k, (m, n) in shapes.items()}
    ranks = {k: lstm.factorized_rank(m, n, spec.budget) for k, (m, n) in shapes.items()}
    total += flops_lib.lstm_layer_flops(
        dim, units, proj or None, kinds=kinds,
        nnz=nnz if spec.kind == 'sparse' else None,
        ranks=ranks if spec.kind == 'factorized' else None)
    dim = out_dim
  return total


def arbitrator_flops(input_dim: int, hidden: int, num_branches: int) -> int:
  # +1 input for the backlog feature; softmax/argmax over K is negligible and not counted.
  return flops_lib.mlp_flops([input_dim + 1, hidden, num_branches], activation='relu')


class Branches(nn.Module):
  specs: tuple[BranchSpec, ...]
  input_dim: int
  layers: int
  units: int
  proj: int

  @nn.compact
  def __call__(self):
    return [lstm.LSTMStack(self.input_dim, self.layers, self.units, self.proj, s.kind, s.budget,
                           name=s.name)() for s in self.specs]


class Arbitrator(nn.Module):
  """MLP over [stacked frame, log1p(pending backlog / hop)] -> logits over branches."""
  hidden: int
  num_branches: int

  @nn.compact
  def __call__(self):
    return {'backlog_w': self.param('backlog_w', nn.initializers.normal(0.1), (self.hidden,)),
            'hidden_b': self.param('hidden_b', nn.initializers.zeros, (self.hidden,)),
            'out': self.param('out', nn.initializers.lecun_normal(),
                              (self.hidden, self.num_branches)),
            'out_b': self.param('out_b', nn.initializers.zeros, (self.num_branches,))}


class ArbitratorInput(nn.Module):
  """The arbitrator's frame projection, hoisted out of the routing scan."""
  hidden: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.hidden, name='frame_proj')(x)


@dataclasses.dataclass(frozen=True)
class RoutingConfig:
  hop: float                       # seconds per encoder frame (arrival interval)
  rate: float                      # simulated device FLOP/s
  temperature_start: float = 1.0
  temperature_end: float = 0.01
  anneal_steps: int = 1000
  loss_variant: str = 'backlog'    # amortized_loss.VARIANTS
  lambda_cost: float = 0.0
  lambda_amr: float = 0.0
  backlog_threshold: float = 0.1   # seconds
  g_shape: str = 'linear'
  extra_frame_flops: float = 0.0   # decoder work per frame counted by the simulator (option)
  gumbel_hard: bool = True         # training: straight-through one-hot (True) or the soft sample

  def temperature(self, step):
    if step is None:
      return jnp.asarray(self.temperature_end, jnp.float32)
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(self.anneal_steps, 1), 0.0, 1.0)
    return self.temperature_start * (self.temperature_end / self.temperature_start) ** frac


class AmNetEncoder(nn.Module):
  """Routed multi-branch LSTM encoder; `__call__` has the asr encoder signature."""
  input_dim: int
  layers: int
  units: int
  proj: int
  branches: tuple[BranchSpec, ...]
  arbitrator_hidden: int
  routing: RoutingConfig
  lstm_impl: str = 'auto'    # one branch: asr.lstm.run_stack's impl (auto: the scans)
  # An ablation at inference: every frame to this branch (the arbitrator's cost still counted,
  # the latency still simulated). Tells the accuracy of each trained branch inside the AmNet.
  force_branch: str = ''
  # Sparse branches pruned in row segments of this many output columns (0: element-wise).
  sparse_group: int = 0

  def setup(self):
    self.branch_set = Branches(self.branches, self.input_dim, self.layers, self.units, self.proj,
                               name='branches')
    if len(self.branches) > 1:
      self.arb_input = ArbitratorInput(self.arbitrator_hidden, name='arbitrator_input')
      self.arbitrator = Arbitrator(self.arbitrator_hidden, len(self.branches), name='arbitrator')

  # --- costs -------------------------------------------------------------------------------
  def branch_costs(self) -> np.ndarray:
    """FLOPs per frame of each branch, the arbitrator's overhead included (K > 1)."""
    costs = np.array([branch_flops(s, self.input_dim, self.layers, self.units, self.proj,
                                   self.sparse_group) for s in self.branches], np.float64)
    if len(self.branches) > 1:
      costs += arbitrator_flops(self.input_dim, self.arbitrator_hidden, len(self.branches))
    return costs + self.routing.extra_frame_flops

  # --- routing -----------------------------------------------------------------------------
  def _decide(self, arb, hidden_x, pending, temperature, noise):
    """One frame's decision: (probs [B, K], one-hot route [B, K] with straight-through grad)."""
    feat = jnp.log1p(pending / self.routing.hop)[:, None]
    h = jax.nn.relu(hidden_x + feat * arb['backlog_w'] + arb['hidden_b'])
    logits = h @ arb['out'] + arb['out_b']
    probs = jax.nn.softmax(logits / temperature)
    if noise is None:
      return probs, jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1], dtype=probs.dtype)
    soft = jax.nn.softmax((logits + noise) / temperature)
    if not self.routing.gumbel_hard:
      return probs, soft
    hard = jax.nn.one_hot(jnp.argmax(soft, -1), logits.shape[-1], dtype=soft.dtype)
    return probs, hard + soft - jax.lax.stop_gradient(soft)

  def route(self, x, paddings, *, train: bool, step=None):
    """Routing of every frame: dict(probs, route [B, T, K], pending, backlog [B, T], upl [B])."""
    batch, frames, _ = x.shape
    k = len(self.branches)
    costs = jnp.asarray(self.branch_costs(), jnp.float32)
    if k == 1:
      route = jnp.ones((batch, frames, 1), x.dtype)
      sim = latency.simulate_jax(jnp.broadcast_to(costs[0], (batch, frames)), paddings,
                                 rate=self.routing.rate, hop=self.routing.hop)
      return dict(probs=route, route=route, **sim)
    arb = self.arbitrator()
    hidden_x = self.arb_input(x)                                  # hoisted frame projection
    temperature = self.routing.temperature(step)
    noise = (jax.random.gumbel(self.make_rng('gumbel'), (frames, batch, k)) if train
             else jnp.zeros((frames, batch, 0)))

    def body(f_prev, inputs):
      hx_t, a_t, pad_t, noise_t = inputs
      f_t, probs, route, pending_t, backlog_t = self._route_frame(
          arb, costs, temperature, f_prev, hx_t, a_t, pad_t, noise_t if train else None)
      return f_t, (probs, route, pending_t, backlog_t)

    final, (probs, route, pending, backlog) = jax.lax.scan(
        body, jnp.zeros((batch,), jnp.float32),
        (jnp.swapaxes(hidden_x, 0, 1), latency.arrival_times(frames, self.routing.hop, jnp),
         jnp.swapaxes(paddings, 0, 1), noise))
    t_major = lambda a: jnp.swapaxes(a, 0, 1)
    return dict(probs=t_major(probs), route=t_major(route), pending=t_major(pending),
                backlog=t_major(backlog),
                upl=latency.final_upl(final, paddings, self.routing.hop, jnp))

  def _route_frame(self, arb, costs, temperature, f_prev, hx_t, a_t, pad_t, noise_t):
    """One frame's routing, the same in training, evaluation and streaming: the arbitrator
    sees the backlog pending at the frame's arrival and picks a branch (or the forced one);
    the simulated device then charges that branch's cost (the sample's expected cost when
    the route is soft). Returns (f_t, probs, route, pending_t, backlog_t)."""
    pending = latency.pending_backlog(f_prev, a_t)
    probs, route = self._decide(arb, hx_t, pending, temperature, noise_t)
    forced = self._forced_index()
    if forced is not None:
      route = jnp.broadcast_to(jax.nn.one_hot(forced, len(self.branches), dtype=route.dtype),
                               route.shape)
    f_t, pending_t, backlog_t = latency.step(f_prev, a_t, route @ costs, self.routing.rate,
                                             pad_t)
    return f_t, probs, route, pending_t, backlog_t

  def _forced_index(self):
    if not self.force_branch:
      return None
    names = [b.name for b in self.branches]
    if self.force_branch not in names:
      raise ValueError(f'model.encoder.force_branch: {self.force_branch!r} is not one of {names}')
    return names.index(self.force_branch)

  # --- the routed stack --------------------------------------------------------------------
  def __call__(self, x, paddings, *, train: bool = False, step=None):
    routing = self.route(x, paddings, train=train, step=step)
    weights = self.branch_set()
    route = routing['route']
    if len(self.branches) == 1:            # a baseline: no mixing, the fastest stack path
      x = lstm.run_stack(weights[0], x, paddings, self.lstm_impl)
      return x, paddings, self._aux(routing, paddings, step)
    if self.proj:
      for layer in range(self.layers):
        layer_w = [w[layer] for w in weights]
        x = _routed_layer(layer_w, x, paddings, route, self.units, self.proj)
    else:            # time-major through the stack, hand-written backward (routed_recurrence)
      x, route_t = jnp.swapaxes(x, 0, 1), jnp.swapaxes(route, 0, 1)
      for layer in range(self.layers):
        layer_w = [w[layer] for w in weights]
        gx = jnp.stack([lstm.matmul(w['wx'], x) + w['bias'] for w in layer_w], 2)
        x = routed_recurrence.routed_recurrence([w['wh'] for w in layer_w], gx, route_t)
      x = jnp.where(paddings[..., None] > 0, 0.0, jnp.swapaxes(x, 0, 1))
    aux = self._aux(routing, paddings, step)
    return x, paddings, aux

  def _aux(self, routing, paddings, step):
    valid = 1.0 - paddings
    n = jnp.maximum(valid.sum(), 1.0)
    costs = jnp.asarray(self.branch_costs(), jnp.float32)
    aux = {'route': routing['route'], 'probs': routing['probs'], 'backlog': routing['backlog'],
           'pending': routing['pending'], 'upl': routing['upl'],
           'flops_per_frame': (routing['route'] @ costs * valid).sum() / n,
           'upl_mean': routing['upl'].mean()}
    if len(self.branches) == 1:
      return aux
    probs = routing['probs']
    extra, terms = amortized_loss.amortized_terms(
        probs, costs, routing['pending'], paddings, variant=self.routing.loss_variant,
        lambda_cost=self.routing.lambda_cost, lambda_amr=self.routing.lambda_amr,
        threshold=self.routing.backlog_threshold, g_shape=self.routing.g_shape,
        rate=self.routing.rate, hop=self.routing.hop)
    aux['loss'] = extra
    aux.update({f'amortized/{k}': v for k, v in terms.items() if jnp.ndim(v) == 0})
    for i, spec in enumerate(self.branches):
      aux[f'share/{spec.name}'] = (routing['route'][..., i] * valid).sum() / n
    aux['confident_share'] = ((probs.max(-1) >= 0.99) * valid).sum() / n
    aux['temperature'] = self.routing.temperature(step)
    return aux

  # --- streaming with real conditional compute ---------------------------------------------
  def stream_weights(self):
    """Every branch's layer weights for `stream`, computed on the host (not under jit) once:
    sparse branches pruned in groups in the grouped format, the others as trained."""
    weights = self.branch_set()
    if not self.sparse_group:
      return weights
    return [[lstm.to_streaming(w, self.sparse_group) for w in branch] if spec.kind == 'sparse'
            else branch for spec, branch in zip(self.branches, weights)]

  def stream(self, x, paddings, weights=None):
    """One utterance x [1, T, D] frame by frame, running only the chosen branch per frame.

    `weights`: those of `stream_weights()`; None runs the trained weights (masked dense).
    Returns (outputs [1, T, P], dict(route [T] branch ids, pending, backlog [T], upl scalar)).
    """
    ys, info, carry = self.stream_chunk(x, paddings, self.stream_init(x.dtype), weights)
    upl = latency.final_upl(carry['finish'][None], paddings, self.routing.hop, jnp)[0]
    return ys, dict(info, upl=upl)

  def stream_init(self, dtype=jnp.float32):
    """The carry before the first frame of a stream: the simulated device idle at time 0,
    every layer at zero state, no frame seen."""
    return {'finish': jnp.zeros((), jnp.float32), 'frames': jnp.zeros((), jnp.int32),
            'state': [lstm.zero_state(1, self.units, self.proj, dtype)
                      for _ in range(self.layers)]}

  def stream_chunk(self, x, paddings, carry, weights=None):
    """The next frames x [1, T, D] of a stream whose earlier frames left `carry` (see
    `stream_init`), so that audio arriving in pieces is encoded as one utterance would be.
    Padded frames (a suffix: the end of the stream) leave the carry unchanged.

    Returns (outputs [1, T, P], dict(route [T], pending, backlog [T]), new carry).
    """
    if weights is None:
      weights = self.branch_set()
    k = len(self.branches)
    costs = jnp.asarray(self.branch_costs(), jnp.float32)
    hop, rate = self.routing.hop, self.routing.rate
    if k > 1:
      arb = self.arbitrator()
      hidden_x = self.arb_input(x)[0]
    else:
      hidden_x = jnp.zeros((x.shape[1], 1), x.dtype)

    def run_branch(branch_w, state, x_t):
      new_state, inp = [], x_t
      for layer_w, layer_state in zip(branch_w, state):
        layer_state = lstm.lstm_step(layer_w, layer_state,
                                     lstm.matmul(layer_w['wx'], inp) + layer_w['bias'])
        new_state.append(layer_state)
        inp = layer_state[0]
      return new_state, inp

    branch_fns = [functools.partial(run_branch, w) for w in weights]

    def body(carry, inputs):
      f_prev, state = carry
      x_t, hx_t, a_t, pad_t = inputs
      if k > 1:
        f_t, _, route, pending_t, backlog_t = jax.tree_util.tree_map(
            lambda a: a[0], self._route_frame(arb, costs, 1.0, f_prev[None], hx_t[None], a_t,
                                              pad_t[None], None))
        choice = jnp.argmax(route)
      else:
        choice = jnp.zeros((), jnp.int32)
        f_t, pending_t, backlog_t = latency.step(f_prev, a_t, costs[0], rate, pad_t)
      new_state, y = jax.lax.switch(choice, branch_fns, state, x_t[None])
      keep = pad_t > 0
      state = jax.tree_util.tree_map(lambda o, n: jnp.where(keep, o, n), state, new_state)
      return (f_t, state), (jnp.where(keep, 0.0, y[0]), choice, pending_t, backlog_t)

    # Arrival times continue from the frames already seen: the device's clock is the stream's.
    arrival = latency.arrival_times(x.shape[1], hop, jnp) + carry['frames'] * hop
    (final, state), (ys, choices, pending, backlog) = jax.lax.scan(
        body, (carry['finish'], carry['state']), (x[0], hidden_x, arrival, paddings[0]))
    frames = carry['frames'] + jnp.sum(paddings[0] < 0.5).astype(jnp.int32)
    return (ys[None], dict(route=choices, pending=pending, backlog=backlog),
            {'finish': final, 'frames': frames, 'state': state})


def _routed_layer(branch_weights, x, paddings, route, units, proj):
  """One layer of every branch over the sequence, states mixed by the per-frame route."""
  gx = jnp.stack([lstm.matmul(w['wx'], x) + w['bias'] for w in branch_weights], 2)  # [B,T,K,4H]
  batch = x.shape[0]
  state = lstm.zero_state(batch, units, proj, x.dtype)

  def step(state, inputs):
    gx_t, route_t, pad_t = inputs                    # [B,K,4H], [B,K], [B]
    outs = [lstm.lstm_step(w, state, gx_t[:, i]) for i, w in enumerate(branch_weights)]
    y = sum(route_t[:, i:i + 1] * o[0] for i, o in enumerate(outs))
    c = sum(route_t[:, i:i + 1] * o[1] for i, o in enumerate(outs))
    keep = pad_t[:, None] > 0
    state = (jnp.where(keep, state[0], y), jnp.where(keep, state[1], c))
    return state, jnp.where(keep, 0.0, y)

  _, ys = jax.lax.scan(step, state, (jnp.swapaxes(gx, 0, 1), jnp.swapaxes(route, 0, 1),
                                     jnp.swapaxes(paddings, 0, 1)))
  return jnp.swapaxes(ys, 0, 1)


def dense_reference_flops(cfg, input_dim: int) -> float:
  """FLOPs per frame of the dense single-branch encoder of the same shape: sets the device."""
  enc_cfg = cfg.model.encoder
  return float(branch_flops(BranchSpec('dense'), input_dim, enc_cfg.layers, enc_cfg.units,
                            enc_cfg.proj))


def from_config(cfg, input_dim: int, hop: float) -> AmNetEncoder:
  enc_cfg, routing_cfg = cfg.model.encoder, cfg.model.encoder.routing
  rate = (enc_cfg.device_flops or
          dense_reference_flops(cfg, input_dim) / (enc_cfg.full_model_rtf * hop))
  routing = RoutingConfig(
      hop=hop, rate=float(rate), temperature_start=routing_cfg.temperature_start,
      temperature_end=routing_cfg.temperature_end, anneal_steps=routing_cfg.anneal_steps,
      loss_variant=routing_cfg.loss_variant, lambda_cost=routing_cfg.lambda_cost,
      lambda_amr=routing_cfg.lambda_amr, backlog_threshold=routing_cfg.backlog_threshold,
      g_shape=routing_cfg.g_shape, extra_frame_flops=enc_cfg.extra_frame_flops,
      gumbel_hard=routing_cfg.gumbel_hard)
  return AmNetEncoder(input_dim=input_dim, layers=enc_cfg.layers, units=enc_cfg.units,
                      proj=enc_cfg.proj, branches=parse_branches(enc_cfg.branches),
                      arbitrator_hidden=routing_cfg.arbitrator_hidden, routing=routing,
                      lstm_impl=enc_cfg.lstm_impl, force_branch=routing_cfg.force_branch,
                      sparse_group=enc_cfg.sparse_group)
