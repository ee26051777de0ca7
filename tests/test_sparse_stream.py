"""The grouped sparse format streaming runs: exact against the masked dense product, group masks
with their structure under the pruning schedule, FLOPs of what is computed, config checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amortized import compression
from amortized import encoder as amnet
from asr import flops as flops_lib
from asr import lstm
from asr import sparsity
from experiments import validate
from experiments.configs import common


def _masked(rng, m, n, density):
  """A random element-wise masked kernel with an all-zero row and an all-zero column."""
  w = rng.standard_normal((m, n)).astype(np.float32)
  w *= rng.random((m, n)) < density
  if density < 1:
    w[m // 2] = 0.0
    w[:, n // 3] = 0.0
  return w


@pytest.mark.parametrize('m, n, group, density, lead', [
    (192, 768, 32, 0.1, (1,)),          # a streaming frame: the einsum path
    (480, 768, 32, 0.1, (4,)),          # a few rows: the multiply-and-sum path
    (192, 768, 1, 0.2, (1,)),           # per-column indices (plain ELL)
    (24, 16, 1, 0.3, (3,)),             # ... of a few rows: the batched dot
    (13, 24, 8, 0.3, (3,)),
    (13, 24, 4, 1.0, (1,)),             # density 1: every row in every group
    (20, 12, 3, 0.3, (2, 17)),          # more rows than GROUPED_SUM_MAX_ROWS: batched dot
    (20, 12, 6, 0.05, (5,)),
])
def test_grouped_product_equals_the_masked_dense_product(m, n, group, density, lead):
  rng = np.random.default_rng(m + n + group)
  w = _masked(rng, m, n, density)
  x = rng.standard_normal((*lead, m)).astype(np.float32)
  weights = lstm.to_grouped(w, group)
  got = np.asarray(lstm.matmul(weights, jnp.asarray(x)))
  np.testing.assert_allclose(got, x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)
  if density < 1:
    np.testing.assert_array_equal(got[..., n // 3], 0.0)     # the all-zero column
  live = np.any(w.reshape(m, n // group, group) != 0, axis=2)   # [m, n / G]
  assert weights['rows'].shape == (n // group, max(1, live.sum(0).max()))
  # each group's live rows, in order, then padding whose values are zero
  for g in range(n // group):
    rows = np.asarray(weights['rows'][g])
    count = live[:, g].sum()
    np.testing.assert_array_equal(rows[:count], np.flatnonzero(live[:, g]))
    np.testing.assert_array_equal(np.asarray(weights['values'][g, count:]), 0.0)


def test_grouped_format_of_an_all_zero_matrix_and_bad_groups():
  weights = lstm.to_grouped(np.zeros((6, 8), np.float32), 4)
  assert weights['rows'].shape == (2, 1)
  np.testing.assert_array_equal(lstm.matmul(weights, jnp.ones((1, 6))), 0.0)
  with pytest.raises(ValueError, match='does not divide'):
    lstm.to_grouped(np.ones((6, 8), np.float32), 3)


def _brute_force_group_mask(w, density, group):
  m, n = w.shape
  count = int(np.floor(density * m + 0.5))
  mask = np.zeros((m, n), bool)
  for g in range(n // group):
    score = (w[:, g * group:(g + 1) * group].astype(np.float64) ** 2).sum(1)
    order = np.lexsort((np.arange(m), -score))           # largest first, ties to the lower row
    mask[order[:count], g * group:(g + 1) * group] = True
  return mask


@pytest.mark.parametrize('ties', [False, True])
@pytest.mark.parametrize('density', [0.0, 0.1, 0.33, 1.0])
def test_group_mask_keeps_the_largest_segments_the_same_count_per_column(density, ties):
  rng = np.random.default_rng(3)
  w = (rng.integers(-2, 3, (30, 24)) if ties else rng.standard_normal((30, 24))).astype(
      np.float32)
  mask = sparsity.group_mask(w, density, 8)
  np.testing.assert_array_equal(mask, _brute_force_group_mask(w, density, 8))
  count = sparsity.rounded_count(density, 30)
  np.testing.assert_array_equal(mask.sum(0), count)
  weights = lstm.to_grouped(w * mask, 8)                 # no padding: exactly count rows
  assert weights['rows'].shape == (3, max(1, count))
  with pytest.raises(ValueError, match='does not divide'):
    sparsity.group_mask(w, 0.5, 5)


def _encoder(branches, sparse_group, proj=0):
  return amnet.AmNetEncoder(
      input_dim=12, layers=2, units=16, proj=proj, branches=amnet.parse_branches(branches),
      arbitrator_hidden=8, routing=amnet.RoutingConfig(hop=0.03, rate=1e6, anneal_steps=10),
      sparse_group=sparse_group)


def _inputs(batch=1, frames=23):
  return (jax.random.normal(jax.random.key(0), (batch, frames, 12)),
          jnp.zeros((batch, frames)))


def test_group_pruning_reaches_the_budget_with_equal_columns_at_every_round():
  enc = _encoder('slow:dense,fast:sparse:0.2', 8)
  x, pads = _inputs(2)
  v = enc.init({'params': jax.random.key(1), 'gumbel': jax.random.key(2)}, x, pads)
  param = compression.pruning_parametrization(
      amnet.parse_branches('slow:dense,fast:sparse:0.2'), total_steps=50, steps_per_epoch=10,
      prune_epochs=3, group=8)
  trainable, fixed = param.init({'params': {'encoder': v['params']},
                                 'masks': {'encoder': v['masks']}})
  densities = []
  for epoch in range(5):
    trainable, fixed = param.on_round(epoch, trainable, fixed)
    masks = fixed['masks']['encoder']['branches']['fast']
    expected = sparsity.density_schedule(epoch, 5, 0.2, 3)
    for path, mask in jax.tree_util.tree_flatten_with_path(masks)[0]:
      m, n = mask.shape
      count = sparsity.rounded_count(expected, m)
      np.testing.assert_array_equal(mask.sum(0), count, err_msg=jax.tree_util.keystr(path))
      # within a group every column keeps the same rows
      groups = mask.reshape(m, n // 8, 8)
      assert np.all(groups == groups[..., :1])
      if epoch >= 3:              # the budget: 2 of 12 input rows, 3 of 16 recurrent rows
        assert abs(mask.mean() - 0.2) <= 0.5 / m
    densities.append(np.mean([l.mean() for l in jax.tree_util.tree_leaves(masks)]))
  assert densities[0] == 1.0 and densities[4] == densities[3]
  assert all(a > b for a, b in zip(densities[:4], densities[1:4]))
  w = np.asarray(trainable['encoder']['branches']['fast']['layer_0']['wx']['kernel'])
  m = np.asarray(fixed['masks']['encoder']['branches']['fast']['layer_0']['wx']['kernel'])
  np.testing.assert_array_equal(m > 0, sparsity.group_mask(w, 0.2, 8))


def _group_masks(variables, density, group):
  params = variables['params']

  def one(path, mask):
    node = params
    for key in path:
      node = node[key.key]
    return sparsity.group_mask(node, density, group).astype(np.float32)
  return {**variables, 'masks': jax.tree_util.tree_map_with_path(one, variables['masks'])}


@pytest.mark.parametrize('proj', [0, 8])
def test_streaming_lstm_steps_in_the_grouped_format_equal_the_masked_dense_steps(proj):
  layer = lstm.LSTMLayer(12, 16, proj, 'sparse', 0.25)
  variables = _group_masks(layer.init(jax.random.key(0), jnp.zeros((1, 3, 12)),
                                      jnp.zeros((1, 3))), 0.25, 4)
  masked = layer.apply(variables, method=lstm.LSTMLayer.weights)
  grouped = lstm.to_streaming(masked, 4)
  assert {'rows', 'values'} == set(grouped['wx']) == set(grouped['wh'])
  assert ('wp' in grouped) == bool(proj)
  xs = jax.random.normal(jax.random.key(1), (9, 1, 12))

  def run(w):
    def step(state, x_t):
      state = lstm.lstm_step(w, state, lstm.matmul(w['wx'], x_t) + w['bias'])
      return state, state
    return jax.lax.scan(step, lstm.zero_state(1, 16, proj), xs)[1]
  for got, want in zip(run(grouped), run(masked)):
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize('branches', ['slow:dense,fast:sparse:0.25', 'main:sparse:0.2'])
def test_encoder_streams_the_grouped_format_with_the_masked_dense_outputs(branches):
  enc = _encoder(branches, 8)
  x, pads = _inputs()
  v = _group_masks(enc.init({'params': jax.random.key(1), 'gumbel': jax.random.key(2)},
                            x, pads), 0.25, 8)
  weights = enc.apply(v, method='stream_weights')
  for spec, branch in zip(enc.branches, weights):
    assert ('rows' in branch[0]['wh']) == (spec.kind == 'sparse')
  stream = jax.jit(lambda x, p, w: enc.apply(v, x, p, w, method='stream'))
  ys, info = stream(x, pads, weights)
  ys_masked, info_masked = stream(x, pads, None)
  np.testing.assert_allclose(ys, ys_masked, atol=1e-5)
  np.testing.assert_array_equal(info['route'], info_masked['route'])
  if ',' in branches:           # both branches ran
    assert len(np.unique(np.asarray(info['route']))) == 2
  # element-wise masks (no group) stream as trained
  plain = _encoder(branches, 0)
  assert 'kernel' in plain.apply(v, method='stream_weights')[-1][0]['wh']


def test_branch_flops_count_what_the_grouped_product_multiplies():
  spec = amnet.BranchSpec('fast', 'sparse', 0.1)
  enc = _encoder('main:sparse:0.1', 8, proj=8)
  x, pads = _inputs()
  v = _group_masks(enc.init({'params': jax.random.key(1)}, x, pads), 0.1, 8)
  layers = enc.apply(v, method='stream_weights')[0]
  total, dim = 0, 12
  for w in layers:
    nnz = {name: int(w[key]['values'].size) for name, key in
           (('input', 'wx'), ('recurrent', 'wh'), ('proj', 'wp'))}
    total += flops_lib.lstm_layer_flops(dim, 16, 8, kinds=dict.fromkeys(nnz, 'sparse'), nnz=nnz)
    dim = 8
  assert amnet.branch_flops(spec, 12, 2, 16, 8, sparse_group=8) == total
  # element-wise pruning counts round(budget * size) per matrix instead
  assert amnet.branch_flops(spec, 12, 2, 16, 8) != total


@pytest.mark.parametrize('overrides, message', [
    ({'model.encoder.sparse_group': 32}, 'applies only to sparse branches'),
    ({'model.encoder.branches': 'main:sparse:0.1', 'model.encoder.sparse_group': 48},
     r'divide .*\[512\]'),
    ({'model.encoder.branches': 'main:sparse:0.1', 'model.encoder.sparse_group': 32,
      'model.encoder.proj': 48}, r'divide .*\[512, 48\]'),
    ({'model.encoder.branches': 'main:sparse:0.1', 'model.encoder.sparse_group': -1}, '>= 0'),
])
def test_validate_refuses_bad_sparse_groups(overrides, message):
  cfg = common.base_config()
  cfg.update_from_flattened_dict(overrides)
  with pytest.raises(validate.ConfigError, match=f'model.encoder.sparse_group: .*{message}'):
    validate.check(cfg)
  cfg.model.encoder.branches = 'main:sparse:0.1'
  cfg.model.encoder.sparse_group = 32
  cfg.model.encoder.proj = 0
  validate.check(cfg)


def test_matvec_timing_times_every_form_against_dense():
  from experiments import matvec_timing
  rows = matvec_timing.measure(2, 16, 32, 0.25, [8, 5], frames=3, repeats=1,
                               rng=np.random.default_rng(0))
  assert [r['form'] for r in rows] == ['dense', 'masked', 'ell', 'grouped_8']  # not 5: 32 % 5
  assert rows[0]['vs_dense'] == 1.0 and all(r['us_per_frame'] > 0 for r in rows)
  assert rows[-1]['computed'] == 0.25                      # 4 of 16 rows in every group
