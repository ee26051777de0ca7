"""Tests for diffs.delta: materialization vs numpy, gradients, hashing, budgets, top-k."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffs import delta as D
from diffs import package
from asr import sparsity

M32 = 0xffffffff


def make_base(seed=0):
  rng = np.random.default_rng(seed)
  f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)
  return {'encoder': {'lstm': {'kernel': f32(6, 8), 'bias': f32(8)}, 'conv': f32(3, 2, 4)},
          'predictor': {'embed': f32(5, 4)},
          'joint': {'w': f32(8, 5), 'b': f32(5), 'scale': np.float32(1.5)}}


def flat(tree):
  return {package.path_str(k): np.asarray(v) for k, v in
          jax.tree_util.tree_flatten_with_path(tree)[0]}


def randomize(trainable, seed=1):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda t: jnp.asarray(rng.normal(size=t.shape).astype(np.float32)),
                      trainable)


# ------------------------------------------------------------------ independent hash reference

def ref_mix(x):
  x &= M32
  x ^= x >> 16
  x = (x * 0x7feb352d) & M32
  x ^= x >> 15
  x = (x * 0x846ca68b) & M32
  return x ^ (x >> 16)


def ref_hash(i, seed, k):
  """lowbias32 on Python ints, written from the format description."""
  bucket = ref_mix(i ^ ref_mix(seed ^ 0x9e3779b9)) % k
  sign = 1 - 2 * (ref_mix(i ^ ref_mix(seed ^ 0x85ebca6b)) >> 31)
  return bucket, sign


def test_hash_numpy_jax_and_reference_agree():
  for seed, n, k in [(0, 50, 7), (12345, 200, 1), (M32, 64, 64), (2**31 + 5, 300, 13)]:
    bucket_np, sign_np = package.hash_buckets(n, seed, k)
    bucket_jx, sign_jx = D.hash_buckets(n, np.uint32(seed), k)
    np.testing.assert_array_equal(bucket_np, np.asarray(bucket_jx))
    np.testing.assert_array_equal(sign_np, np.asarray(sign_jx))
    reference = [ref_hash(i, seed, k) for i in range(n)]
    np.testing.assert_array_equal(bucket_np, [b for b, _ in reference])
    np.testing.assert_array_equal(sign_np, [s for _, s in reference])


def test_hash_is_deterministic_uses_all_buckets_and_is_balanced():
  n, k = 20000, 50
  first, sign = package.hash_buckets(n, 7, k)
  again, _ = package.hash_buckets(n, 7, k)
  other, _ = package.hash_buckets(n, 8, k)
  np.testing.assert_array_equal(first, again)
  assert np.mean(first != other) > 0.9          # another seed is another hash
  counts = np.bincount(first, minlength=k)
  assert counts.min() > 0 and counts.size == k
  expected = n / k
  chi2 = float(((counts - expected) ** 2 / expected).sum())
  assert chi2 < 2 * k                            # ~k for a uniform hash; 2k is p < 1e-4
  assert abs(sign.mean()) < 0.05
  # bucket and sign are not tied to each other
  assert abs(np.corrcoef(first % 2, sign)[0, 1]) < 0.05


def test_hashed_values_land_where_the_hash_says():
  base = make_base()
  trainable, fixed = D.init_hashed(base, budget=40, seed=3)
  path, k_index = 'encoder/lstm/kernel', 2
  t = jax.tree.map(jnp.zeros_like, trainable)
  t['encoder']['lstm']['kernel'] = t['encoder']['lstm']['kernel'].at[k_index].set(1.0)
  dense = flat(D.dense('hashed', t, fixed, base))[path]
  seed = int(fixed['encoder']['lstm']['kernel'])
  k = trainable['encoder']['lstm']['kernel'].shape[0]
  expected = np.array([s if b == k_index else 0 for b, s in
                       (ref_hash(i, seed, k) for i in range(48))], np.float32).reshape(6, 8)
  np.testing.assert_array_equal(dense, expected)
  assert seed == package.leaf_seed(3, path)


def test_hashed_budget_split_proportional_and_exact():
  base = make_base()
  trainable, _ = D.init_hashed(base, budget=77, seed=0)
  ks = {p: v.size for p, v in flat(trainable).items()}
  sizes = {p: v.size for p, v in flat(base).items()}
  assert sum(ks.values()) == 77 == D.count_payload('hashed', trainable, None)
  total = sum(sizes.values())
  for p in ks:
    assert abs(ks[p] - 77 * sizes[p] / total) < 1 and ks[p] <= sizes[p]
  with pytest.raises(ValueError, match='hashed budget'):
    D.init_hashed(base, budget=10**6)


# ------------------------------------------------------------------ materialize and gradients

def reference_dense(method, trainable, fixed, base):
  """numpy dense delta per path, from the definitions."""
  out = {}
  t_flat = jax.tree_util.tree_structure(base).flatten_up_to(trainable)
  f_flat = (jax.tree_util.tree_structure(base).flatten_up_to(fixed)
            if fixed is not None else [None] * len(t_flat))
  for (path, leaf), t, f in zip(flat(base).items(), t_flat, f_flat):
    if isinstance(t, dict):
      a, b = np.asarray(t['a'], np.float64), np.asarray(t['b'], np.float64)
      out[path] = (a @ b).reshape(leaf.shape)
    elif np.size(t) == 0:
      out[path] = np.zeros(leaf.shape)
    elif method == 'sparse':
      out[path] = np.asarray(t) * np.asarray(f)
    elif method == 'hashed':
      pairs = [ref_hash(i, int(f), t.shape[0]) for i in range(leaf.size)]
      out[path] = np.array([s * float(t[b]) for b, s in pairs]).reshape(leaf.shape)
    else:
      out[path] = np.asarray(t)
  return out


def all_methods(base):
  sparse_t, sparse_f = D.init_sparse(base)
  sparse_t = randomize(sparse_t)
  sparse_t, sparse_f = sparsity.reprune(sparse_t, sparse_f, density=0.3)
  hashed_t, hashed_f = D.init_hashed(base, 60, seed=1)
  return {
      'sparse': (sparse_t, sparse_f),
      'hashed': (randomize(hashed_t), hashed_f),
      'lowrank': (randomize(D.init_lowrank(base, 150)[0]), None),
      'topk': (randomize(D.init('topk', base, 25, min_ndim=1)[0]), None),   # trains as full
      'full': (randomize(D.init_full(base, min_ndim=1)[0]), None),
  }


@pytest.mark.parametrize('method', D.METHODS)
def test_materialize_equals_base_plus_reference_delta(method):
  base = make_base()
  trainable, fixed = all_methods(base)[method]
  params = flat(D.materialize(method, trainable, fixed, base))
  reference = reference_dense(method, trainable, fixed, base)
  for path, leaf in flat(base).items():
    assert params[path].dtype == leaf.dtype and params[path].shape == leaf.shape
    np.testing.assert_allclose(params[path], leaf + reference[path], rtol=1e-6, atol=1e-6)
  jitted = jax.jit(D.materialize, static_argnums=0)(method, trainable, fixed, base)
  for path, value in flat(jitted).items():
    np.testing.assert_allclose(value, params[path], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('method', D.METHODS)
def test_gradient_reaches_trainable_only(method):
  base = make_base()
  trainable, fixed = all_methods(base)[method]
  rng = np.random.default_rng(5)
  weights = jax.tree.map(lambda b: rng.normal(size=np.shape(b)).astype(np.float32), base)
  def loss(t, b):
    params = D.materialize(method, t, fixed, b)
    return sum(jnp.sum(w * p) for w, p in zip(jax.tree_util.tree_leaves(weights),
                                              jax.tree_util.tree_leaves(params)))
  grad_t, grad_base = jax.jit(jax.grad(loss, argnums=(0, 1)))(trainable, base)
  for g in jax.tree_util.tree_leaves(grad_base):
    assert not np.any(np.asarray(g))              # stop_gradient: the base is frozen
  # d loss / d trainable from the definitions (numpy)
  w_flat = flat(weights)
  t_flat = jax.tree_util.tree_structure(base).flatten_up_to(trainable)
  g_flat = jax.tree_util.tree_structure(base).flatten_up_to(grad_t)
  f_flat = (jax.tree_util.tree_structure(base).flatten_up_to(fixed) if fixed is not None
            else [None] * len(t_flat))
  for (path, w), t, g, f in zip(w_flat.items(), t_flat, g_flat, f_flat):
    if isinstance(t, dict):
      a, b = np.asarray(t['a']), np.asarray(t['b'])
      w2 = w.reshape(a.shape[0], b.shape[1])
      np.testing.assert_allclose(g['a'], w2 @ b.T, rtol=1e-4, atol=1e-5)
      np.testing.assert_allclose(g['b'], a.T @ w2, rtol=1e-4, atol=1e-5)
    elif np.size(t) == 0:
      assert np.size(g) == 0
    elif method == 'sparse':
      np.testing.assert_array_equal(g, w * np.asarray(f))
    elif method == 'hashed':
      expected = np.zeros(t.shape[0])
      for i, wi in enumerate(w.ravel()):
        bucket, sign = ref_hash(i, int(f), t.shape[0])
        expected[bucket] += sign * wi
      np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-5)
    else:
      np.testing.assert_array_equal(g, w)


def test_every_method_ships_as_a_package_method_and_unknown_names_are_refused():
  assert list(D.METHODS) == ['sparse', 'hashed', 'lowrank', 'topk', 'full']
  assert {record.ships for record in D.METHODS.values()} <= set(package.METHODS)
  base = make_base()
  with pytest.raises(ValueError, match="unknown diff method 'zip'"):
    D.init('zip', base, 10)
  with pytest.raises(ValueError, match='the full method takes no budget'):
    D.init('full', base, 10)


def test_optimizer_state_is_trainable_sized():
  base = make_base()
  for method, budget in (('hashed', 30), ('lowrank', 120)):
    trainable, fixed = D.init(method, base, budget)
    state = optax.adam(1e-3).init(trainable)
    mu_size = sum(np.size(x) for x in jax.tree_util.tree_leaves(state[0].mu))
    assert mu_size == D.count_payload(method, trainable, fixed) <= budget


def test_eligibility_options():
  base = make_base()
  trainable, masks = D.init_sparse(base, min_ndim=2, exclude='^predictor/')
  sizes = {p: v.size for p, v in flat(trainable).items()}
  assert sizes == {'encoder/conv': 24, 'encoder/lstm/bias': 0, 'encoder/lstm/kernel': 48,
                   'joint/b': 0, 'joint/scale': 0, 'joint/w': 40, 'predictor/embed': 0}
  params = flat(D.materialize('sparse', randomize(trainable), masks, base))
  for path in ('encoder/lstm/bias', 'joint/b', 'joint/scale', 'predictor/embed'):
    np.testing.assert_array_equal(params[path], flat(base)[path])
  assert D.count_payload('sparse', trainable, masks) == 112


# ------------------------------------------------------------------ budgets

def test_sparse_density_hits_budget_exactly():
  base = make_base()
  trainable, masks = D.init_sparse(base, min_ndim=2)
  trainable = randomize(trainable)
  for budget, per_leaf in ((37, False), (37, True), (1, False), (112, True)):
    density = D.sparse_density(trainable, budget)
    _, new_masks = sparsity.reprune(trainable, masks, density, per_leaf)
    assert D.count_payload('sparse', trainable, new_masks) == budget


def test_lowrank_rank_is_the_largest_that_fits():
  base = make_base()
  matrices = [(6, 8), (6, 4), (5, 4), (8, 5)]   # conv [3, 2, 4] is reshaped to [6, 4]
  ones = 8 + 5 + 1                                # bias, b, scale (dense)
  cost = lambda r: ones + sum(min(r, m, n) * (m + n) for m, n in matrices)
  for budget in (cost(1), cost(2) - 1, cost(3), 500):
    rank = D.lowrank_rank(base, budget)
    assert cost(rank) <= budget and (rank == 6 or cost(rank + 1) > budget)
  rank = D.lowrank_rank(base, 500)
  trainable, _ = D.init_lowrank(base, 500)
  assert D.count_payload('lowrank', trainable, None) == cost(rank)
  assert trainable['encoder']['conv']['a'].shape == (6, 4)      # capped at min(m, n)
  assert trainable['encoder']['lstm']['kernel']['b'].shape == (rank, 8)
  trainable, _ = D.init_lowrank(base, rank=2, one_d='exclude')
  assert D.count_payload('lowrank', trainable, None) == sum(2 * (m + n) for m, n in matrices)
  with pytest.raises(ValueError, match='does not fit rank 1'):
    D.lowrank_rank(base, cost(1) - 1)
  # B starts at zero: the delta is zero and params equal the base
  for path, value in flat(D.materialize('lowrank', trainable, None, base)).items():
    np.testing.assert_array_equal(value, flat(base)[path])


def test_budget_helpers():
  base = make_base()
  total = sum(v.size for v in flat(base).values())
  assert D.budget_from_fraction(base, 0.1) == round(0.1 * total)
  assert D.entries_for_bytes(1000, 'hashed', 'fp16') == 500
  assert D.entries_for_bytes(1000, 'hashed', 'int8') == 1000
  assert D.entries_for_bytes(1000, 'sparse', 'fp16') == 333
  assert D.entries_for_bytes(1000, 'sparse', 'int8', density=0.5) == 800   # bitmap: 1/4 B


# ------------------------------------------------------------------ top-k baseline

def test_topk_ships_the_largest_entries_of_the_full_delta_as_sparse():
  base = make_base()
  trainable, fixed = all_methods(base)['topk']
  k = 25
  method, payload = D.ship('topk', trainable, fixed, base, k, min_ndim=2)
  assert method == 'sparse'
  f_full = flat(trainable)
  pooled = sorted(((abs(float(v)), p, i) for p, leaf in f_full.items() if leaf.ndim >= 2
                   for i, v in enumerate(leaf.ravel())), reverse=True)[:k]
  expected = {}
  for _, p, i in pooled:
    expected.setdefault(p, []).append(i)
  assert sorted(payload) == sorted(expected)
  for p, fields in payload.items():
    assert fields['kind'] == 'sparse'
    np.testing.assert_array_equal(fields['indices'], sorted(expected[p]))
    np.testing.assert_array_equal(fields['values'], f_full[p].ravel()[sorted(expected[p])])


@pytest.mark.parametrize('per_leaf', [False, True])
def test_compress_top_k_keeps_exactly_the_k_largest(per_leaf):
  base = make_base()
  rng = np.random.default_rng(9)
  full = jax.tree.map(lambda b: rng.normal(size=np.shape(b)).astype(np.float32), base)
  k = 25
  values, mask = D.compress_top_k(full, k, per_leaf, min_ndim=2)
  f_full, f_values, f_mask = flat(full), flat(values), flat(mask)
  eligible = [p for p, v in f_full.items() if v.ndim >= 2]
  assert sum(f_mask[p].sum() for p in f_mask) == k
  for p in f_full:
    np.testing.assert_array_equal(f_values[p], np.where(f_mask[p], f_full[p], 0))
    if p not in eligible:
      assert not f_mask[p].any()
  if per_leaf:
    counts = sparsity.apportion([f_full[p].size for p in eligible], k)
    for p, c in zip(eligible, counts):
      top = np.sort(np.abs(f_full[p]).ravel())[::-1][:c]
      np.testing.assert_array_equal(np.sort(np.abs(f_full[p][f_mask[p]]))[::-1], top)
  else:
    pooled = np.concatenate([np.abs(f_full[p]).ravel() for p in eligible])
    threshold = np.sort(pooled)[::-1][k - 1]
    for p in eligible:
      np.testing.assert_array_equal(f_mask[p], np.abs(f_full[p]) >= threshold)
