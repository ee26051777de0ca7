"""The branching encoder: streaming = offline routing, baselines = plain LSTM, pruning, SVD."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amortized import compression
from amortized import encoder as amnet
from amortized import latency
from asr import lstm
from asr import train as train_lib
from experiments import models
from tests import helpers


def _encoder(branches, **routing):
  cfg = dict(hop=0.03, rate=1e6, anneal_steps=10)
  cfg.update(routing)
  return amnet.AmNetEncoder(input_dim=12, layers=2, units=16, proj=0,
                            branches=amnet.parse_branches(branches), arbitrator_hidden=8,
                            routing=amnet.RoutingConfig(**cfg))


def _inputs(batch=2, frames=25):
  x = jax.random.normal(jax.random.key(0), (batch, frames, 12))
  pads = jnp.zeros((batch, frames)).at[1, 18:].set(1.0)
  return x, pads


def _random_masks(variables):
  rng = np.random.default_rng(0)
  masks = jax.tree_util.tree_map(lambda m: (rng.random(m.shape) > 0.6).astype(np.float32),
                                 variables['masks'])
  return {**variables, 'masks': masks}


@pytest.mark.parametrize('branches', ['slow:dense,fast:sparse:0.3',
                                      'slow:dense,fast:factorized:0.25',
                                      'a:dense,b:factorized:0.5,c:sparse:0.2'])
def test_streaming_equals_offline_hard_routing(branches):
  enc = _encoder(branches)
  x, pads = _inputs()
  variables = enc.init({'params': jax.random.key(1), 'gumbel': jax.random.key(2)}, x, pads)
  if 'masks' in variables:
    variables = _random_masks(variables)
  y, _, aux = enc.apply(variables, x, pads, train=False)
  for row in range(2):
    n = int((pads[row] == 0).sum())
    ys, info = enc.apply(variables, x[row:row + 1, :n], pads[row:row + 1, :n], method='stream')
    np.testing.assert_allclose(ys[0], y[row, :n], atol=1e-5)
    np.testing.assert_array_equal(info['route'], aux['route'][row, :n].argmax(-1))
    np.testing.assert_allclose(info['upl'], aux['upl'][row], rtol=1e-5)
  # the check above is only meaningful if routing switches between branches inside a row
  assert len(np.unique(np.asarray(aux['route'][0, :18].argmax(-1)))) > 1


def test_routed_recurrence_matches_autodiff_of_the_mixing_scan():
  """The hand-written backward of the routed layer: values and the gradients of every input
  (dense, sparse and factorized recurrent weights, gates and the soft route) equal autodiff
  through a plain scan that freezes the state at padded frames."""
  from amortized import routed_recurrence
  rng = np.random.default_rng(0)
  batch, frames, units, k = 3, 9, 6, 3
  recurrent = [{'kernel': jnp.asarray(rng.normal(size=(units, 4 * units)) * 0.5, jnp.float32)},
               {'kernel': jnp.asarray(rng.normal(size=(units, 4 * units)) * 0.5
                                      * (rng.random((units, 4 * units)) > 0.5), jnp.float32)},
               {'a': jnp.asarray(rng.normal(size=(units, 2)), jnp.float32),
                'b': jnp.asarray(rng.normal(size=(2, 4 * units)) * 0.5, jnp.float32)}]
  gx = jnp.asarray(rng.normal(size=(batch, frames, k, 4 * units)), jnp.float32)
  route = jax.nn.softmax(jnp.asarray(rng.normal(size=(batch, frames, k)) * 2, jnp.float32))
  pads = jnp.asarray(np.arange(frames)[None] >= np.array([9, 5, 1])[:, None], jnp.float32)
  probe = jnp.asarray(rng.normal(size=(batch, frames, units)), jnp.float32)

  def reference(recurrent, gx, route):
    def step(state, inputs):
      gx_t, r_t, pad_t = inputs
      outs = [lstm.lstm_step({'wh': w}, state, gx_t[:, i]) for i, w in enumerate(recurrent)]
      new = tuple(sum(r_t[:, i:i + 1] * o[j] for i, o in enumerate(outs)) for j in range(2))
      keep = pad_t[:, None] > 0
      state = tuple(jnp.where(keep, old, n) for old, n in zip(state, new))
      return state, jnp.where(keep, 0.0, new[0])
    state = lstm.zero_state(batch, units)
    t_major = lambda a: jnp.swapaxes(a, 0, 1)
    _, ys = jax.lax.scan(step, state, (t_major(gx), t_major(route), t_major(pads)))
    return t_major(ys)

  def fused(recurrent, gx, route):
    out = routed_recurrence.routed_recurrence(recurrent, jnp.swapaxes(gx, 0, 1),
                                              jnp.swapaxes(route, 0, 1))
    return jnp.where(pads[..., None] > 0, 0.0, jnp.swapaxes(out, 0, 1))

  np.testing.assert_allclose(fused(recurrent, gx, route), reference(recurrent, gx, route),
                             atol=1e-5)
  loss = lambda fn: lambda *args: jnp.sum(probe * fn(*args))
  g_ref = jax.grad(loss(reference), argnums=(0, 1, 2))(recurrent, gx, route)
  g_fused = jax.grad(loss(fused), argnums=(0, 1, 2))(recurrent, gx, route)
  for a, b in zip(jax.tree_util.tree_leaves(g_fused), jax.tree_util.tree_leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize('hard', [True, False])
def test_training_mix_gradient_reaches_unchosen_branch_only_when_soft(hard):
  """Straight-through hard samples give a branch exactly no gradient from frames routed
  elsewhere; the soft sample (gumbel_hard=False) mixes by probability, so it does."""
  enc = _encoder('slow:dense,fast:factorized:0.25', gumbel_hard=hard)
  x, pads = _inputs(batch=1, frames=6)
  pads = jnp.zeros_like(pads)
  v = enc.init({'params': jax.random.key(1), 'gumbel': jax.random.key(2)}, x, pads)
  # Every frame to 'fast': a large logit bias, temperature 1 (step 0) so the soft mix is not
  # one-hot in float32.
  params = jax.tree_util.tree_map(lambda a: a, v['params'])
  params['arbitrator']['out_b'] = jnp.array([-4.0, 4.0])
  rngs = {'gumbel': jax.random.key(5)}

  def loss(branches):
    p = {**params, 'branches': branches}
    y, _, aux = enc.apply({**v, 'params': p}, x, pads, train=True, step=0, rngs=rngs)
    return jnp.sum(y ** 2), aux['route']

  grads, route = jax.jit(jax.grad(loss, has_aux=True))(params['branches'])
  slow_grad = sum(float(jnp.abs(g).sum()) for g in jax.tree_util.tree_leaves(grads['slow']))
  fast_grad = sum(float(jnp.abs(g).sum()) for g in jax.tree_util.tree_leaves(grads['fast']))
  assert fast_grad > 0
  if hard:
    np.testing.assert_array_equal(route[0, :, 0], 0.0)      # no frame chose 'slow'
    assert slow_grad == 0.0
  else:
    assert 0 < float(route[0, :, 0].max()) < 0.5            # a soft share on every frame
    assert slow_grad > 1e-4 * fast_grad


def test_one_branch_dense_amnet_is_the_plain_lstm_stack():
  """A baseline is an AmNet with one branch: its output is the masked per-layer scans
  (autodiff reference) over the branch's weights, and it has no arbitrator."""
  enc = _encoder('main:dense')
  x, pads = _inputs()
  v = enc.init({'params': jax.random.key(3)}, x, pads)
  branch = v['params']['branches']['main']
  weights = [{'wx': dict(branch[f'layer_{i}']['wx']), 'wh': dict(branch[f'layer_{i}']['wh']),
              'bias': branch[f'layer_{i}']['bias']} for i in range(2)]
  y, _, aux = enc.apply(v, x, pads)
  y_plain = lstm.run_masked_scans(weights, x, pads)
  np.testing.assert_allclose(y, y_plain, atol=1e-6)
  assert 'loss' not in aux and 'arbitrator' not in v['params']


def test_force_branch_runs_that_branch_alone_as_a_one_branch_model():
  """The inference ablation: every frame to 'fast' equals a one-branch model holding the fast
  branch's weights; streaming agrees; the simulator charges the fast cost (+ arbitrator)."""
  import dataclasses
  enc = _encoder('slow:dense,fast:factorized:0.25')
  x, pads = _inputs()
  v = enc.init({'params': jax.random.key(4), 'gumbel': jax.random.key(5)}, x, pads)
  forced = dataclasses.replace(enc, force_branch='fast')
  y, _, aux = forced.apply(v, x, pads, train=False)
  alone = _encoder('fast:factorized:0.25')
  y_alone, _, _ = alone.apply({'params': {'branches': {'fast': v['params']['branches']['fast']}}},
                              x, pads)
  np.testing.assert_allclose(y, y_alone, atol=1e-5)
  assert (np.asarray(aux['route'])[..., 1] == 1).all()
  costs = enc.branch_costs()
  for row in range(2):
    n = int((pads[row] == 0).sum())
    ys, info = forced.apply(v, x[row:row + 1, :n], pads[row:row + 1, :n], method='stream')
    np.testing.assert_allclose(ys[0], y[row, :n], atol=1e-5)
    assert (np.asarray(info['route']) == 1).all()
    upl = helpers.simulate_loop([costs[1]] * n, rate=1e6, hop=0.03)['upl']
    np.testing.assert_allclose(info['upl'], upl, rtol=1e-5)
  with pytest.raises(ValueError, match='force_branch'):
    dataclasses.replace(enc, force_branch='medium').apply(v, x, pads)


def test_branch_costs_follow_budgets():
  enc = _encoder('slow:dense,fast:sparse:0.25')
  costs = enc.branch_costs()
  arb = amnet.arbitrator_flops(12, 8, 2)
  dense = amnet.branch_flops(amnet.BranchSpec('d'), 12, 2, 16, 0)
  assert costs[0] == pytest.approx(dense + arb)
  # matmuls dominate: a quarter-density branch costs a bit over a quarter of the dense one
  assert 0.25 < (costs[1] - arb) / dense < 0.4


def test_gumbel_straight_through_trains_the_arbitrator_and_anneals():
  enc = _encoder('slow:dense,fast:factorized:0.25', lambda_amr=1.0, lambda_cost=0.5)
  x, pads = _inputs()
  v = enc.init({'params': jax.random.key(1), 'gumbel': jax.random.key(2)}, x, pads, train=True)

  def loss(params):
    y, _, aux = enc.apply({'params': params}, x, pads, train=True, step=0,
                          rngs={'gumbel': jax.random.key(5)})
    return jnp.mean(y ** 2) + aux['loss']
  grads = jax.jit(jax.grad(loss))(v['params'])
  assert float(jnp.abs(grads['arbitrator']['out']).sum()) > 0
  assert float(jnp.abs(grads['arbitrator_input']['frame_proj']['kernel']).sum()) > 0
  r = enc.routing
  assert float(r.temperature(0)) == pytest.approx(1.0)
  assert float(r.temperature(10)) == pytest.approx(0.01)
  assert float(r.temperature(5)) == pytest.approx(0.1, rel=1e-5)


def test_gradual_pruning_reaches_the_budget_per_matrix():
  enc = _encoder('slow:dense,fast:sparse:0.2')
  x, pads = _inputs()
  v = enc.init({'params': jax.random.key(1), 'gumbel': jax.random.key(2)}, x, pads)
  param = compression.pruning_parametrization(amnet.parse_branches('slow:dense,fast:sparse:0.2'),
                                              total_steps=50, steps_per_epoch=10, prune_epochs=3)
  trainable, fixed = param.init({'params': {'encoder': v['params']},
                                 'masks': {'encoder': v['masks']}})
  densities = []
  for epoch in range(5):
    trainable, fixed = param.on_round(epoch, trainable, fixed)
    leaves = jax.tree_util.tree_leaves(fixed['masks']['encoder']['branches']['fast'])
    densities.append(np.mean([l.mean() for l in leaves]))
    for mask in leaves:
      assert set(np.unique(mask)) <= {0.0, 1.0}
  assert densities[0] == pytest.approx(1.0)
  assert all(a >= b for a, b in zip(densities, densities[1:]))
  assert densities[3] == pytest.approx(0.2, abs=1e-3) and densities[4] == densities[3]
  # kept entries are the largest-magnitude ones
  w = np.asarray(trainable['encoder']['branches']['fast']['layer_0']['wx']['kernel'])
  m = fixed['masks']['encoder']['branches']['fast']['layer_0']['wx']['kernel']
  assert np.abs(w[m > 0]).min() >= np.abs(w[m == 0]).max()


def test_pruning_in_step_rounds_is_gradual_inside_one_epoch():
  # 300 steps, shorter than the 330-step epoch: by epochs it is one cut at step 0; rounds of 25
  # steps fall along the cubic schedule to the budget at round 8 (step 200), then hold.
  enc = _encoder('slow:dense,fast:sparse:0.2')
  x, pads = _inputs()
  v = enc.init({'params': jax.random.key(1), 'gumbel': jax.random.key(2)}, x, pads)
  specs = amnet.parse_branches('slow:dense,fast:sparse:0.2')
  variables = {'params': {'encoder': v['params']}, 'masks': {'encoder': v['masks']}}

  def densities(param, rounds):
    trainable, fixed = param.init(variables)
    out = []
    for index in range(rounds):
      trainable, fixed = param.on_round(index, trainable, fixed)
      leaves = jax.tree_util.tree_leaves(fixed['masks']['encoder']['branches']['fast'])
      out.append(sum(l.sum() for l in leaves) / sum(l.size for l in leaves))
    return out

  by_epoch = compression.pruning_parametrization(specs, total_steps=300, steps_per_epoch=330,
                                                 prune_epochs=8)
  assert by_epoch.round_steps == 0
  assert densities(by_epoch, 1)[0] == pytest.approx(0.2, abs=2e-3)
  by_steps = compression.pruning_parametrization(specs, total_steps=300, steps_per_epoch=330,
                                                 prune_epochs=8, prune_every=25)
  assert by_steps.round_steps == 25
  expected = [0.2 + 0.8 * (1 - min(i / 8, 1.0)) ** 3 for i in range(12)]
  np.testing.assert_allclose(densities(by_steps, 12), expected, atol=2e-3)


def test_svd_initialisation_is_the_best_low_rank_approximation():
  w = np.random.default_rng(0).standard_normal((20, 12)).astype(np.float32)
  a, b = compression.svd_factors(w, 4)
  s = np.linalg.svd(w, compute_uv=False)
  np.testing.assert_allclose(np.linalg.norm(w - a @ b), np.sqrt((s[4:] ** 2).sum()), rtol=1e-4)


@pytest.mark.slow
def test_tiny_amnet_trains_from_a_dense_baseline(tmp_path):
  cfg = helpers.tiny_config(**{'train.steps': 4})
  data = helpers.tiny_dataset(cfg)
  model = models.build_model(cfg)
  train_lib.train(cfg, str(tmp_path / 'full'), model, data, log=lambda *_: None)
  cfg2 = helpers.tiny_config(**{
      'train.steps': 4, 'model.encoder.routing.lambda_amr': 1.0,
      'model.encoder.branches': 'slow:dense,fast:factorized:0.25',
      'model.encoder.init_from': str(tmp_path / 'full')})
  amnet_model = models.build_model(cfg2)
  from experiments import modes
  param, init_vars = modes.parametrization_and_init(cfg2, amnet_model, data)
  full = train_lib.load_params(str(tmp_path / 'full'))
  np.testing.assert_allclose(
      init_vars['params']['encoder']['branches']['slow']['layer_0']['wx']['kernel'],
      full['encoder']['branches']['main']['layer_0']['wx']['kernel'])
  _, _, history = train_lib.train(cfg2, str(tmp_path / 'amnet'), amnet_model, data,
                                  parametrization=param, init_vars=init_vars,
                                  log=lambda *_: None)
  rec = history['train']
  assert np.isfinite(rec['loss']) and rec['share/slow'] + rec['share/fast'] == pytest.approx(1.0)
