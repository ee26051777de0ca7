"""Tests for asr.sparsity: exact top-k masks, the density schedule, re-pruning, a pruning run."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffs import delta as D
from asr import sparsity


def tree(seed=0, ties=False):
  rng = np.random.default_rng(seed)
  draw = (lambda *s: rng.integers(-3, 4, size=s).astype(np.float32)) if ties else (
      lambda *s: rng.normal(size=s).astype(np.float32))
  return {'a': draw(7, 5), 'b': {'c': draw(11), 'd': draw(3, 2, 2)}, 'e': np.zeros(0, np.float32)}


def brute_force_mask(values, count):
  """Sort by (-|v|, global index) and keep the first `count`: the documented tie rule."""
  leaves, treedef = jax.tree_util.tree_flatten(values)
  pooled = np.concatenate([np.abs(np.asarray(v)).ravel() for v in leaves])
  order = np.lexsort((np.arange(pooled.size), -pooled))
  keep = np.zeros(pooled.size, bool)
  keep[order[:count]] = True
  sizes = [np.size(v) for v in leaves]
  parts = np.split(keep, np.cumsum(sizes)[:-1])
  return treedef.unflatten([p.reshape(np.shape(v)) for p, v in zip(parts, leaves)])


@pytest.mark.parametrize('ties', [False, True])
@pytest.mark.parametrize('density', [0.0, 0.13, 0.5, 0.999, 1.0])
def test_global_magnitude_mask_matches_brute_force(density, ties):
  values = tree(1, ties)
  total = sum(np.size(v) for v in jax.tree_util.tree_leaves(values))
  masks = sparsity.magnitude_mask(values, density)
  expected = brute_force_mask(values, math.floor(density * total + 0.5))
  for got, want in zip(jax.tree_util.tree_leaves(masks), jax.tree_util.tree_leaves(expected)):
    assert got.dtype == bool
    np.testing.assert_array_equal(got, want)


def test_per_leaf_mask_counts_and_choice():
  values = tree(2, ties=True)
  masks = sparsity.magnitude_mask(values, 0.4, per_leaf=True)
  leaves = jax.tree_util.tree_leaves(values)
  counts = sparsity.apportion([v.size for v in leaves], math.floor(0.4 * 58 + 0.5))
  for v, m, c in zip(leaves, jax.tree_util.tree_leaves(masks), counts):
    np.testing.assert_array_equal(m, brute_force_mask([v], c)[0])
  assert sum(int(m.sum()) for m in jax.tree_util.tree_leaves(masks)) == 23


def test_apportion():
  assert sparsity.apportion([10, 20, 30], 6) == [1, 2, 3]
  assert sparsity.apportion([1, 1, 1], 2) == [1, 1, 0]          # ties go to the earlier leaf
  assert sparsity.apportion([5, 0, 5], 10) == [5, 0, 5]
  rng = np.random.default_rng(0)
  for _ in range(50):
    sizes = rng.integers(0, 100, size=6).tolist()
    total = int(rng.integers(0, sum(sizes) + 1))
    shares = sparsity.apportion(sizes, total)
    assert sum(shares) == total
    assert all(0 <= s <= n and abs(s - total * n / max(sum(sizes), 1)) < 1
               for s, n in zip(shares, sizes))
  with pytest.raises(ValueError):
    sparsity.apportion([3], 4)


@pytest.mark.parametrize('kind', ['cubic', 'linear', 'exponential'])
def test_density_schedule(kind):
  final, epochs, prune = 0.07, 10, 6
  densities = [sparsity.density_schedule(e, epochs, final, prune, kind) for e in range(epochs)]
  assert densities[0] == 1.0
  assert all(a >= b for a, b in zip(densities, densities[1:]))
  assert all(d > final for d in densities[:prune])
  assert densities[prune:] == [final] * (epochs - prune)
  if kind == 'cubic':                              # Zhu & Gupta's formula, in density
    assert densities[3] == pytest.approx(final + (1 - final) * (1 - 3 / 6) ** 3)


def test_density_schedule_rejects_bad_arguments():
  with pytest.raises(ValueError, match='prune_rounds'):
    sparsity.density_schedule(0, 5, 0.1, 5)         # last epoch would not be at the budget
  with pytest.raises(ValueError, match='final_density'):
    sparsity.density_schedule(0, 5, 0.0, 2)
  with pytest.raises(ValueError, match='kind'):
    sparsity.density_schedule(0, 5, 0.1, 2, 'step')
  assert sparsity.density_schedule(0, 5, 0.1, 0) == 0.1


def test_reprune_shrinks_the_mask_and_zeroes_pruned_entries():
  trainable = jax.tree.map(jnp.asarray, tree(3))
  masks = jax.tree.map(lambda v: np.ones(v.shape, bool), trainable)
  trainable, masks = sparsity.reprune(trainable, masks, 0.5)
  # give pruned entries large stale values (as momentum would): they must not come back
  stale = jax.tree.map(lambda t, m: jnp.where(m, t * 0, 100.0), trainable, masks)
  new_t, new_m = sparsity.reprune(stale, masks, 0.25)
  for old, new, t in zip(*(jax.tree_util.tree_leaves(x) for x in (masks, new_m, new_t))):
    assert not np.any(new & ~old)                  # subset, even though live values are 0
    np.testing.assert_array_equal(np.asarray(t)[~new], 0)
  assert sum(int(m.sum()) for m in jax.tree_util.tree_leaves(new_m)) == 15   # 14.5 rounds half up


def test_mask_updates():
  updates = {'w': jnp.arange(6.0).reshape(2, 3)}
  masks = {'w': np.array([[True, False, True], [False, False, True]])}
  out = sparsity.mask_updates(updates, masks)
  np.testing.assert_array_equal(out['w'], [[0, 0, 2], [0, 0, 5]])


def test_gradual_pruning_run_reaches_budget_and_fits_the_target():
  """A sparse diff trained toward a target delta with the schedule: ends with exactly the budget
  of entries, none pruned entry moves, and it recovers the target's largest entries."""
  rng = np.random.default_rng(0)
  base = {'w': rng.normal(size=(12, 10)).astype(np.float32), 'b': np.zeros(10, np.float32)}
  target = {'w': (rng.normal(size=(12, 10)) * (rng.random((12, 10)) < 0.2)).astype(np.float32),
            'b': np.zeros(10, np.float32)}
  trainable, masks = D.init_sparse(base, min_ndim=2)
  budget = 24
  final = D.sparse_density(trainable, budget)
  optimizer = optax.adam(0.05)
  state = optimizer.init(trainable)

  @jax.jit
  def step(trainable, state, masks):
    def loss(t):
      params = D.materialize('sparse', t, masks, base)
      return sum(jnp.sum((params[k] - base[k] - target[k]) ** 2) for k in base)
    value, grads = jax.value_and_grad(loss)(trainable)
    updates, state = optimizer.update(grads, state)
    updates = sparsity.mask_updates(updates, masks)
    return optax.apply_updates(trainable, updates), state, value

  epochs, prune_epochs = 6, 4
  for epoch in range(epochs):
    density = sparsity.density_schedule(epoch, epochs, final, prune_epochs)
    if epoch:
      trainable, masks = sparsity.reprune(trainable, masks, density)
    for _ in range(60):
      before = trainable
      trainable, state, value = step(trainable, state, masks)
      frozen = ~masks['w']
      np.testing.assert_array_equal(np.asarray(trainable['w'])[frozen],
                                    np.asarray(before['w'])[frozen])
  assert D.count_payload('sparse', trainable, masks) == budget
  top = np.argsort(-np.abs(target['w']).ravel(), kind='stable')[:budget]
  assert set(np.flatnonzero(masks['w'])) == set(top)
  assert float(value) < 0.05 * float(np.sum(target['w'] ** 2))
