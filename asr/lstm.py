"""LSTM building blocks: weight matrices of three kinds, the cell, a layer, and a stacked encoder.

A weight matrix is dense, sparse (dense kernel times a 0/1 mask held in the `masks` variable
collection, so pruning never touches `params`), or rank-r factorized (`x @ a @ b`). A compressed
matrix has a `budget`: the fraction of the dense matrix's FLOPs it may cost (the sparse density,
or the factorization rank r with 2r(m+n) <= budget * 2mn). `Matrix`
returns the weights as a small dict and `matmul` applies them, so the recurrence runs as a plain
`lax.scan` over arrays: no module call inside the loop.

Training keeps a sparse matrix as the masked dense kernel, which costs a dense product. For
streaming, `to_streaming` converts a layer's masked kernels (on the host, once) to the grouped
format that `matmul` also applies: for every group of G consecutive output columns, the k input
rows that are nonzero in that group and their [k, G] values, so the product gathers k inputs per
group and multiplies them by a dense [k, G] block. It pays when the mask has that structure
(`asr.sparsity.group_mask`: the same k rows in every group, nothing padded): on one CPU thread,
at 10% density and G = 32, a [192 or 480, 768] product of one frame takes about 0.2x the dense
one, and a 3 x LSTM-192 branch streams in under 0.1x the dense branch's time (whose 3.7 MB of
weights overflow the 2 MB L2 cache every frame; `experiments/matvec_timing.py`, README
"Performance").
Gathering one index per output column instead (G = 1: plain ELL, of an element-wise mask) runs
3-11x slower than dense: XLA's CPU gather costs far more per index than a multiply-add.

Each layer's input projection does not depend on the recurrent state, so it is computed for the
whole sequence in one matrix product before the scan ("hoisting"); the scan only does the
recurrent product and the cell. The encoder (`amortized/encoder.py`, whose one-branch case is
the plain dense or compressed stack) is built from these pieces.

A stack of dense layers without projection can instead run as one cuDNN call
(`jax.experimental.rnn.lstm`, GPU only): `run_stack` picks it with `impl='auto'` on a GPU. Its
gate order (i, f, g, o) is ours; the packing is tested on CPU against `jax.experimental.rnn`'s
reference implementation, which runs anywhere.

Layer math (asr/flops.py counts exactly this):
  gates = x @ W_x + b + y_prev @ W_h       (4H)
  i, f, g, o = split(gates)
  c = sigmoid(f) * c_prev + sigmoid(i) * tanh(g)
  h = sigmoid(o) * tanh(c)
  y = h @ W_p  if a projection is configured, else h    (y is both output and recurrent input)
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from asr import recurrence

Array = jax.Array
KINDS = ('dense', 'sparse', 'factorized')


def factorized_rank(m: int, n: int, budget: float) -> int:
  """The largest rank whose product costs at most `budget` of the dense m x n FLOPs (>= 1)."""
  return max(1, min(m, n, int(budget * m * n / (m + n))))


class Matrix(nn.Module):
  """An `in_features x out_features` weight of a given kind; returns its weights as a dict."""
  in_features: int
  out_features: int
  kind: str = 'dense'
  budget: float = 1.0
  init_scale: float = 1.0

  @nn.compact
  def __call__(self) -> dict[str, Array]:
    m, n = self.in_features, self.out_features
    if self.kind not in KINDS:
      raise ValueError(f'matrix kind {self.kind!r} is not one of {KINDS}')
    if not 0 < self.budget <= 1:
      raise ValueError(f'matrix budget {self.budget} must be in (0, 1]')
    if self.kind == 'factorized':
      rank = factorized_rank(m, n, self.budget)
      # a @ b has the variance of a lecun-normal m x n kernel.
      init = nn.initializers.normal(self.init_scale * (1.0 / m) ** 0.5)
      a = self.param('a', init, (m, rank))
      b = self.param('b', nn.initializers.normal(rank ** -0.5), (rank, n))
      return {'a': a, 'b': b}
    kernel = self.param('kernel', nn.initializers.variance_scaling(
        self.init_scale, 'fan_in', 'truncated_normal'), (m, n))
    if self.kind == 'sparse':
      mask = self.variable('masks', 'kernel', lambda: jnp.ones((m, n), kernel.dtype))
      kernel = kernel * mask.value
    return {'kernel': kernel}


def matmul(weights: dict[str, Array], x: Array) -> Array:
  """Applies a `Matrix`'s weights (or their grouped format) to x [..., in_features]."""
  if 'kernel' in weights:
    return x @ weights['kernel']
  if 'rows' in weights:
    return grouped_matmul(weights, x)
  return (x @ weights['a']) @ weights['b']


# Up to this many rows of x, the grouped product multiplies the gathered inputs by the values
# and sums (a [rows, n / G, k, G] temporary); above, a batched dot (no temporary, but 1.6-3x
# slower than dense at 4 rows and G = 32 on one CPU thread, where the sum is 0.2-0.7x).
GROUPED_SUM_MAX_ROWS = 16


def to_grouped(kernel, group: int) -> dict[str, Array]:
  """A masked kernel [m, n] in the grouped format, exactly: for each of the n / G groups of
  output columns, the k rows that have a nonzero in that group (k: the most of any group;
  groups with fewer are padded with rows that are zero there) and their values.

  Returns {'rows': int32 [n / G, k], 'values': [n / G, k, G]}; host-side (numpy)."""
  kernel = np.asarray(kernel)
  m, n = kernel.shape
  if group < 1 or n % group:
    raise ValueError(f'group {group} does not divide the {n} output columns')
  blocks = kernel.reshape(m, n // group, group).transpose(1, 0, 2)        # [n / G, m, G]
  live = np.any(blocks != 0, axis=2)
  k = max(1, int(live.sum(1).max()))
  # a stable sort puts each group's live rows first, in increasing order, then zero rows
  rows = np.argsort(~live, axis=1, kind='stable')[:, :k].astype(np.int32)
  values = np.take_along_axis(blocks, rows[..., None], axis=1)
  return {'rows': jnp.asarray(rows), 'values': jnp.asarray(values)}


def grouped_matmul(weights: dict[str, Array], x: Array) -> Array:
  """x [..., m] times a matrix in the grouped format -> [..., n]."""
  rows, values = weights['rows'], weights['values']
  groups, _, group = values.shape
  lead = x.shape[:-1]
  flat = x.reshape(-1, x.shape[-1])
  # The fastest forms measured on one CPU thread: for one row the einsum (the multiply-and-sum
  # with a leading axis of 1 runs 15x slower); for a few rows the multiply-and-sum, except
  # with G = 1, whose trailing axis of 1 makes it 5x slower than the batched dot.
  if flat.shape[0] == 1:
    y = jnp.einsum('ok,okn->on', flat[0][rows], values)
  elif flat.shape[0] <= GROUPED_SUM_MAX_ROWS and group > 1:
    y = jnp.sum(flat[:, rows][..., None] * values, axis=2)
  else:
    y = jnp.einsum('bok,okn->bon', flat[:, rows], values)
  return y.reshape(*lead, groups * group)


def to_streaming(layer_weights: dict[str, Any], group: int) -> dict[str, Any]:
  """A layer's weights with every plain kernel (dense, or masked: kernel * mask) in the grouped
  format; the product is the masked dense product up to float rounding. Pays where the masks
  have the group structure (`asr.sparsity.group_mask`); host-side, once after loading."""
  return {name: to_grouped(w['kernel'], group) if isinstance(w, dict) and 'kernel' in w else w
          for name, w in layer_weights.items()}


def lstm_cell(gates: Array, c: Array) -> tuple[Array, Array]:
  """The LSTM nonlinearity: gates [..., 4H] and cell state c [..., H] -> (h, c)."""
  i, f, g, o = jnp.split(recurrence.gate_activations(gates), 4, axis=-1)
  c = f * c + i * g
  return o * jnp.tanh(c), c


def forget_bias_init(units: int, value: float = 1.0):
  """Bias init with the forget gate at `value`: the usual trick for early gradient flow."""
  def init(key, shape, dtype=jnp.float32):
    del key
    return jnp.zeros(shape, dtype).at[units:2 * units].set(value)
  return init


class LSTMLayer(nn.Module):
  """One unidirectional LSTM layer with optional output projection, over padded sequences."""
  input_dim: int
  units: int
  proj: int = 0
  kind: str = 'dense'
  budget: float = 1.0

  def setup(self):
    out_dim = self.proj or self.units
    self.wx = Matrix(self.input_dim, 4 * self.units, self.kind, self.budget)
    self.wh = Matrix(out_dim, 4 * self.units, self.kind, self.budget)
    self.bias = self.param('bias', forget_bias_init(self.units), (4 * self.units,))
    if self.proj:
      self.wp = Matrix(self.units, self.proj, self.kind, self.budget)

  def weights(self) -> dict[str, Any]:
    w = {'wx': self.wx(), 'wh': self.wh(), 'bias': self.bias}
    if self.proj:
      w['wp'] = self.wp()
    return w

  def __call__(self, x: Array, paddings: Array, state=None):
    """x [B, T, D], paddings [B, T] -> (y [B, T, P or H], final (y, c))."""
    w = self.weights()
    gx = matmul(w['wx'], x) + w['bias']                       # hoisted: one product for all T
    if state is None:
      state = zero_state(x.shape[0], self.units, self.proj, x.dtype)
    return run_lstm(w, gx, paddings, state)

  def step(self, state, x_t: Array):
    """One frame x_t [B, D] with state (y, c) -> new state; y is the output."""
    w = self.weights()
    return lstm_step(w, state, matmul(w['wx'], x_t) + w['bias'])


def zero_state(batch: int, units: int, proj: int = 0, dtype=jnp.float32):
  return (jnp.zeros((batch, proj or units), dtype), jnp.zeros((batch, units), dtype))


def lstm_step(w, state, gx_t):
  """One frame: state (y, c), precomputed input gates gx_t [B, 4H] -> new (y, c)."""
  y, c = state
  h, c = lstm_cell(gx_t + matmul(w['wh'], y), c)
  y = matmul(w['wp'], h) if 'wp' in w else h
  return y, c


def run_lstm(w, gx: Array, paddings: Array, state):
  """Scans `lstm_step` over time; padded frames keep the state and output zeros."""
  def step(state, inputs):
    gx_t, pad_t = inputs
    new = lstm_step(w, state, gx_t)
    keep = pad_t[:, None] > 0
    state = tuple(jnp.where(keep, old, nw) for old, nw in zip(state, new))
    return state, jnp.where(keep, 0.0, new[0])
  state, ys = jax.lax.scan(step, state, (jnp.swapaxes(gx, 0, 1), jnp.swapaxes(paddings, 0, 1)))
  return jnp.swapaxes(ys, 0, 1), state


IMPLS = ('auto', 'scan', 'cudnn')


def cudnn_applies(layer_weights) -> bool:
  """cuDNN's LSTM has dense weights and (in jax's wrapper) no output projection."""
  return all(set(w) == {'wx', 'wh', 'bias'} and 'kernel' in w['wx'] and 'kernel' in w['wh']
             for w in layer_weights)


def use_cudnn(impl: str, layer_weights) -> bool:
  if impl not in IMPLS:
    raise ValueError(f'model.encoder.lstm_impl={impl!r} is not one of {IMPLS}')
  if impl != 'cudnn':
    # auto takes the scans on every backend: on an H100 they ran the paper-sized RNN-T step
    # 1.6x faster than cuDNN at the default (TF32) precision and level with it at float32
    # (README "Performance").
    return False
  if not cudnn_applies(layer_weights) or jax.default_backend() != 'gpu':
    raise ValueError('model.encoder.lstm_impl=cudnn needs a GPU and dense layers without '
                     f'projection (backend {jax.default_backend()!r}); use auto or scan')
  return True


def cudnn_weights(layer_weights) -> Array:
  """Our layers' weights in cuDNN's flat layout: every layer's W_ih [4H, D], W_hh [4H, H], then
  every layer's b_ih, b_hh (our one bias is b_ih; b_hh is zero)."""
  mats, biases = [], []
  for w in layer_weights:
    mats += [w['wx']['kernel'].T.reshape(-1), w['wh']['kernel'].T.reshape(-1)]
    biases += [w['bias'], jnp.zeros_like(w['bias'])]
  return jnp.concatenate(mats + biases)


def run_cudnn_stack(layer_weights, x: Array, paddings: Array, lstm_fn=None) -> Array:
  """The whole dense stack in one fused call; padded frames (a suffix) output zeros.

  `lstm_fn` has the signature of `jax.experimental.rnn.lstm` (the default, GPU only); tests pass
  the reference implementation to check the packing on CPU.
  """
  if lstm_fn is None:
    from jax.experimental import rnn  # pylint: disable=g-import-not-at-top
    lstm_fn = rnn.lstm
  batch, _, input_dim = x.shape
  units = layer_weights[0]['wh']['kernel'].shape[0]
  layers = len(layer_weights)
  zeros = jnp.zeros((layers, batch, units), x.dtype)
  # an all-padding row (batch filler) still gets one frame: cuDNN wants lengths >= 1
  lengths = jnp.maximum(jnp.sum(paddings < 0.5, axis=1), 1).astype(jnp.int32)
  y, _, _ = lstm_fn(x, zeros, zeros, cudnn_weights(layer_weights), lengths,
                    input_size=input_dim, hidden_size=units, num_layers=layers, dropout=0.0,
                    bidirectional=False)
  return jnp.where(paddings[..., None] > 0, 0.0, y)


def _out_features(weights: dict[str, Array]) -> int:
  if 'values' in weights:
    return weights['values'].shape[0] * weights['values'].shape[2]
  return (weights['kernel'] if 'kernel' in weights else weights['b']).shape[-1]


def fused_applies(layer_weights) -> bool:
  """`asr.recurrence` needs a plain recurrent kernel (dense, or sparse: kernel * mask)."""
  return all('kernel' in w['wh'] and 'wp' not in w for w in layer_weights)


def run_stack(layer_weights, x: Array, paddings: Array, impl: str = 'auto') -> Array:
  """A stack of layers from zero state -> outputs [B, T, H], zeros at padded frames.

  One cuDNN call when asked for (`impl='cudnn'`); else, for plain kernels, time-major
  hoisted projections and `asr.recurrence` (hand-written backward); else masked scans.
  Paddings must be a suffix of each row (as batching makes them): the first two paths run
  through padded frames and zero them at the end, which leaves the valid outputs and all
  gradients unchanged.
  """
  if use_cudnn(impl, layer_weights):
    return run_cudnn_stack(layer_weights, x, paddings)
  if fused_applies(layer_weights):
    x = jnp.swapaxes(x, 0, 1)                                  # time-major for the whole stack
    for w in layer_weights:
      x = recurrence.recurrence(w['wh']['kernel'], matmul(w['wx'], x) + w['bias'])
    return jnp.where(paddings[..., None] > 0, 0.0, jnp.swapaxes(x, 0, 1))
  return run_masked_scans(layer_weights, x, paddings)


def run_masked_scans(layer_weights, x: Array, paddings: Array) -> Array:
  """Layer by layer with `run_lstm` (autodiff; any weight kind, projections included)."""
  for w in layer_weights:
    units = _out_features(w['wh']) // 4
    proj = _out_features(w['wp']) if 'wp' in w else 0
    state = zero_state(x.shape[0], units, proj, x.dtype)
    x, _ = run_lstm(w, matmul(w['wx'], x) + w['bias'], paddings, state)
  return x


class LSTMStack(nn.Module):
  """The weights of a stack of `LSTMLayer`s, `[{'wx', 'wh', 'bias'(, 'wp')}, ...]` per layer;
  `run_stack` computes it. Every encoder branch is one (amortized/encoder.py)."""
  input_dim: int
  layers: int
  units: int
  proj: int = 0
  kind: str = 'dense'
  budget: float = 1.0

  @nn.compact
  def __call__(self) -> list[dict[str, Any]]:
    dims = [self.input_dim] + [self.proj or self.units] * (self.layers - 1)
    return [LSTMLayer(d, self.units, self.proj, self.kind, self.budget,
                      name=f'layer_{i}').weights() for i, d in enumerate(dims)]
