"""Magnitude pruning: exact top-k masks and a gradual density schedule.

Shared by the AmNet's pruned branches (`amortized/compression.py`, per-matrix masks of the
weights) and the sparse neural diff (`diffs/`, masks of the delta).

The sparse diff trains `delta` with `dense = delta * mask`. Every pruning round (an epoch, or a set
number of steps) the mask is re-derived from |delta * mask| at the density `density_schedule`
gives (Zhu & Gupta's gradual pruning: dense at first, annealed toward the budget, then fixed for
the last rounds); pruned entries are zeroed.

Optimizer state for pruned entries: nothing has to be reset. Their gradient is exactly zero
(dense = delta * mask), and if the updates are masked as well (`mask_updates`, needed with Adam,
whose momentum would otherwise keep moving them) they stay at zero and never reach the model.
`reprune` ranks pruned entries below every live one, so a mask only ever shrinks while the
density falls.

Masks are computed on the host (numpy) once per round; ties are broken toward the lower flat
index (leaves in pytree order), so the same delta always gives the same mask.

Group masks (`group_mask`) prune a matrix [m, n] in row segments of G consecutive output columns:
every group keeps the same number of rows, round(density * m), those with the largest segment
norms. `asr.lstm.to_grouped` stores that structure without padding, and in it a pruned
matrix-vector product runs faster than the dense one on one CPU thread (element-wise masks do
not: README "Performance").
"""
import math

import jax
import jax.numpy as jnp
import numpy as np


def apportion(sizes, total: int) -> list:
  """Integers proportional to `sizes` summing to exactly `total` (largest remainder, ties to the
  earlier entry); each is at most its size. Requires 0 <= total <= sum(sizes)."""
  sizes = [int(s) for s in sizes]
  whole = sum(sizes)
  if not 0 <= total <= whole:
    raise ValueError(f'cannot split {total} over {whole} entries')
  if whole == 0:
    return [0] * len(sizes)
  shares = [total * s // whole for s in sizes]
  remainders = [total * s % whole for s in sizes]
  order = sorted(range(len(sizes)), key=lambda i: (-remainders[i], i))
  for i in order[:total - sum(shares)]:
    shares[i] += 1
  return shares


def rounded_count(density: float, total: int) -> int:
  """round(density * total), halves up; the number of entries a density keeps."""
  if not 0.0 <= density <= 1.0:
    raise ValueError(f'density {density} is outside [0, 1]')
  return min(total, int(math.floor(density * total + 0.5)))


def _top_k_flat(scores: np.ndarray, k: int) -> np.ndarray:
  mask = np.zeros(scores.size, bool)
  if k >= scores.size:
    mask[:] = True
  elif k > 0:
    threshold = np.partition(scores, scores.size - k)[scores.size - k]   # k-th largest
    mask = scores > threshold
    ties = np.flatnonzero(scores == threshold)
    mask[ties[:k - int(mask.sum())]] = True
  return mask


def top_k_mask(scores, count: int, per_leaf: bool = False):
  """Bool numpy masks keeping exactly `count` largest scores: over all leaves at once, or spread
  over the leaves in proportion to their sizes (`apportion`) and chosen within each leaf."""
  leaves, treedef = jax.tree_util.tree_flatten(scores)
  arrays = [np.asarray(leaf, np.float32) for leaf in leaves]
  for (path, _), array in zip(jax.tree_util.tree_flatten_with_path(scores)[0], arrays):
    if not np.all(np.isfinite(array)):
      raise ValueError(f'non-finite value in {jax.tree_util.keystr(path)}')
  sizes = [a.size for a in arrays]
  if not 0 <= count <= sum(sizes):
    raise ValueError(f'cannot keep {count} of {sum(sizes)} entries')
  if per_leaf:
    masks = [_top_k_flat(a.ravel(), c) for a, c in zip(arrays, apportion(sizes, count))]
  else:
    flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0, np.float32)
    masks = np.split(_top_k_flat(flat, count), np.cumsum(sizes)[:-1]) if arrays else []
  return treedef.unflatten([m.reshape(a.shape) for m, a in zip(masks, arrays)])


def _count(tree, density, count) -> int:
  total = sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(tree))
  if (density is None) == (count is None):
    raise ValueError('give exactly one of density and count')
  return rounded_count(density, total) if count is None else int(count)


def magnitude_mask(delta, density=None, per_leaf: bool = False, *, count=None):
  """Masks keeping the largest |delta| entries: exactly round(density * entries) of them (or
  `count`), with a global threshold or per leaf. Empty leaves (ineligible ones) stay empty."""
  scores = jax.tree.map(lambda d: np.abs(np.asarray(d, np.float32)), delta)
  return top_k_mask(scores, _count(delta, density, count), per_leaf)


def group_mask(kernel, density: float, group: int) -> np.ndarray:
  """Bool mask [m, n] of a kernel pruned in groups of `group` output columns: in each group the
  round(density * m) rows with the largest sum of squares over the group (ties to the lower
  row), so every column keeps the same count."""
  kernel = np.asarray(kernel, np.float32)
  m, n = kernel.shape
  if group < 1 or n % group:
    raise ValueError(f'group {group} does not divide the {n} output columns')
  if not np.all(np.isfinite(kernel)):
    raise ValueError('non-finite value in the kernel')
  scores = np.square(kernel).reshape(m, n // group, group).sum(-1)       # [m, n / G]
  count = rounded_count(density, m)
  keep = np.stack([_top_k_flat(scores[:, g], count) for g in range(n // group)], axis=1)
  return np.repeat(keep, group, axis=1)


def density_schedule(round_index: int, num_rounds: int, final_density: float,
                     prune_rounds: int, kind: str = 'cubic') -> float:
  """Density for pruning round `round_index` (0-based; a round is an epoch or a set number of
  steps): 1.0 at round 0, falling to `final_density` at round `prune_rounds` and exactly
  `final_density` from then on (fixed-mask fine-tuning).

  kind: 'cubic' d = f + (1 - f)(1 - t)^3 (Zhu & Gupta 2017), 'linear' d = 1 - (1 - f) t,
  'exponential' d = f^t, with t = round_index / prune_rounds.
  """
  if not 0.0 < final_density <= 1.0:
    raise ValueError(f'final_density {final_density} is outside (0, 1]')
  if not 0 <= prune_rounds < num_rounds:
    raise ValueError(f'prune_rounds {prune_rounds} must be in [0, num_rounds={num_rounds}) so '
                     'that the last round trains at the final density')
  if round_index < 0:
    raise ValueError(f'round {round_index} < 0')
  if round_index >= prune_rounds:
    return float(final_density)
  t = round_index / prune_rounds
  if kind == 'cubic':
    return final_density + (1.0 - final_density) * (1.0 - t) ** 3
  if kind == 'linear':
    return 1.0 - (1.0 - final_density) * t
  if kind == 'exponential':
    return final_density ** t
  raise ValueError(f'unknown density schedule kind {kind!r} (cubic, linear, exponential)')


def reprune(trainable, masks, density=None, per_leaf: bool = False, *, count=None):
  """(trainable with pruned entries zeroed, new masks): keeps the largest |trainable * masks|
  entries, round(density * eligible entries) of them, eligible = all entries of non-empty leaves.
  Entries already pruned rank below every live entry, so the new mask is a subset of the old one
  whenever it keeps fewer entries."""
  scores = jax.tree.map(
      lambda t, m: np.where(np.asarray(m, bool), np.abs(np.asarray(t, np.float32)), -1.0),
      trainable, masks)
  new_masks = top_k_mask(scores, _count(trainable, density, count), per_leaf)
  new_trainable = jax.tree.map(lambda t, m: jnp.where(m, t, jnp.zeros_like(t)), trainable,
                               new_masks)
  return new_trainable, new_masks


def mask_updates(updates, masks):
  """Zeroes optimizer updates at pruned positions (apply before optax.apply_updates)."""
  return jax.tree.map(lambda u, m: jnp.where(m, u, jnp.zeros_like(u)), updates, masks)
