"""Delta pytrees over a frozen base: sparse-masked, hashed, low-rank, top-k and full diffs.

A diff is split in two trees that follow the params tree leaf by leaf (the base tree is a prefix
of both, so `jax.tree.map(f, base, trainable, fixed)` visits one leaf at a time):
  trainable  float32 jnp arrays, the only thing the optimizer sees (its state is this size);
  fixed      host-side constants (numpy masks, hash seeds) or None.
and
  params = materialize(method, trainable, fixed, base) = stop_gradient(base) + dense(...)

Per base leaf, by method (a leaf that is not eligible gets an empty float32 array and adds 0):
  sparse   trainable delta [leaf shape] (zeros), fixed bool mask [leaf shape]; dense = delta*mask.
           The mask starts all-True and is pruned toward the budget by asr.sparsity.
  hashed   trainable v [K_leaf] (zeros), fixed uint32 seed; dense[i] = s(i) * v[h(i)], h and s
           seeded multiply-xorshift hashes of the flat index (package.hash_buckets is the numpy
           twin the device uses; they agree bit for bit). K_leaf ∝ leaf size, sum = budget.
  lowrank  trainable {'a' [m, r] random, 'b' [r, n] zeros} for ndim >= 2 leaves reshaped to
           [prod(shape[:-1]), shape[-1]]; 1-D leaves dense (counted in the budget) or excluded;
           one rank r for all matrices, the largest that fits the budget. fixed None.
  full     trainable delta [leaf shape]; fixed None (the fine-tune-everything baseline).
  topk     trains the full delta, then ships its budget's largest entries as a sparse diff
           (`compress_top_k`: the "fine-tune, then compress" baseline).

Eligibility (all methods): floating leaves with ndim >= min_ndim (2 = matrices only, no biases)
whose '/'-joined path does not match the `exclude` regex.

Everything that differs between methods is one `Method` record in `METHODS`; the functions below
(`init`, `dense`, `materialize`, `count_payload`, `to_payload`, `quantized`, `ship`) look the
record up by name, so a new method is one record.

Budgets count stored values (`count_payload`); `budget_from_fraction` and `entries_for_bytes`
turn a fraction of the model or a byte budget into one.
"""
from collections.abc import Callable, Mapping
import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np

from diffs import package
from asr import sparsity

SPARSE, HASHED, LOWRANK, TOPK, FULL = 'sparse', 'hashed', 'lowrank', 'topk', 'full'
_EMPTY = (0,)


# ----------------------------------------------------------------------------- leaves

def _leaves(base):
  """[(path, base leaf)] in pytree order."""
  flat, _ = jax.tree_util.tree_flatten_with_path(base)
  return [(package.path_str(keypath), leaf) for keypath, leaf in flat]


def _build(base, values):
  """A tree shaped like `base` whose leaves are `values` (any objects, in `_leaves` order)."""
  return jax.tree_util.tree_structure(base).unflatten(values)


def _per_leaf(base, *trees):
  """[(path, base leaf, subtree of each tree)] with base as the prefix of every tree."""
  treedef = jax.tree_util.tree_structure(base)
  columns = [treedef.flatten_up_to(t) for t in trees]
  return [(path, leaf, *parts) for (path, leaf), *parts in zip(_leaves(base), *columns)]


def is_eligible(path: str, leaf, min_ndim: int = 0, exclude=None) -> bool:
  """Whether a base leaf gets a delta: floating, non-empty, ndim >= min_ndim, path not excluded."""
  return (jnp.issubdtype(jnp.result_type(leaf), jnp.floating) and np.size(leaf) > 0
          and np.ndim(leaf) >= min_ndim and not (exclude and re.search(exclude, path)))


def eligible_entries(base, min_ndim: int = 0, exclude=None) -> int:
  """Entries of the base leaves that get a delta (the most a sparse diff could keep)."""
  return sum(np.size(leaf) for path, leaf in _leaves(base)
             if is_eligible(path, leaf, min_ndim, exclude))


def _empty():
  return jnp.zeros(_EMPTY, jnp.float32)


def _stores_nothing(t) -> bool:
  """Whether a leaf's trainable part is empty: the base leaf is not eligible and adds 0."""
  return all(np.size(x) == 0 for x in jax.tree_util.tree_leaves(t))


def budget_from_fraction(base, fraction: float) -> int:
  """Stored values equal to `fraction` of all base parameters (e.g. 0.1 = 10% of the model)."""
  total = sum(np.size(leaf) for _, leaf in _leaves(base))
  return sparsity.rounded_count(fraction, total)


def entries_for_bytes(nbytes: int, method: str, value_dtype: str = 'fp16',
                      density=None) -> int:
  """Approximate stored values that fit `nbytes` of payload (before general compression and
  without the header): value bytes, plus for methods that ship indices (sparse, topk) the index
  cost at `density` (kept / eligible entries; default: one varint byte per index). Measure the
  real size with package.export."""
  per_value = float(package.VALUE_BYTES[value_dtype])
  if get_method(method).indexed:
    if density is None:
      per_value += 1.0
    else:
      gap = 1.0 / density
      varint = math.ceil(max(1.0, math.log2(max(gap, 1.0)) + 1) / 7)
      per_value += min(varint, gap / 8.0)
  return int(nbytes // per_value)


# ----------------------------------------------------------------------------- init

def init_sparse(base, *, min_ndim: int = 0, exclude=None):
  """(trainable zeros, all-True masks) for eligible leaves; prune with asr.sparsity."""
  trainable, fixed = [], []
  for path, leaf in _leaves(base):
    if is_eligible(path, leaf, min_ndim, exclude):
      trainable.append(jnp.zeros(np.shape(leaf), jnp.float32))
      fixed.append(np.ones(np.shape(leaf), bool))
    else:
      trainable.append(_empty())
      fixed.append(np.zeros(_EMPTY, bool))
  return _build(base, trainable), _build(base, fixed)


def sparse_density(trainable, budget: int) -> float:
  """The final density (of eligible entries) that keeps exactly `budget` entries."""
  eligible = sum(np.size(t) for t in jax.tree_util.tree_leaves(trainable))
  if not 0 < budget <= eligible:
    raise ValueError(f'sparse budget {budget} is outside (0, {eligible} eligible entries]')
  return budget / eligible


def init_hashed(base, budget: int, *, seed: int = 0, min_ndim: int = 0, exclude=None):
  """(bucket values zeros [K_leaf], uint32 seeds): K_leaf ∝ leaf size, sum K_leaf = budget."""
  leaves = _leaves(base)
  sizes = [np.size(leaf) if is_eligible(path, leaf, min_ndim, exclude) else 0
           for path, leaf in leaves]
  if not 0 < budget <= sum(sizes):
    raise ValueError(f'hashed budget {budget} is outside (0, {sum(sizes)} eligible entries]')
  buckets = sparsity.apportion(sizes, budget)
  trainable = [jnp.zeros((k,), jnp.float32) for k in buckets]
  fixed = [np.asarray(package.leaf_seed(seed, path), np.uint32) for path, _ in leaves]
  return _build(base, trainable), _build(base, fixed)


def _lowrank_plan(base, one_d, min_ndim, exclude):
  """[(path, role)] with role 'matrix' (m, n), 'dense' or None; and the dense entry count."""
  if one_d not in ('dense', 'exclude'):
    raise ValueError(f"one_d must be 'dense' or 'exclude', got {one_d!r}")
  plan, dense_cost = [], 0
  for path, leaf in _leaves(base):
    if not is_eligible(path, leaf, min_ndim, exclude):
      plan.append(None)
    elif np.ndim(leaf) >= 2:
      plan.append(package.matrix_shape(np.shape(leaf)))
    elif one_d == 'dense':
      plan.append('dense')
      dense_cost += np.size(leaf)
    else:
      plan.append(None)
  return plan, dense_cost


def _lowrank_cost(plan, rank):
  return sum(min(rank, m, n) * (m + n) for m, n in (p for p in plan if isinstance(p, tuple)))


def lowrank_rank(base, budget: int, *, one_d: str = 'dense', min_ndim: int = 0,
                 exclude=None) -> int:
  """Largest rank r (shared by all matrices, capped per matrix at min(m, n)) with
  sum r * (m + n) + dense 1-D entries <= budget."""
  plan, dense_cost = _lowrank_plan(base, one_d, min_ndim, exclude)
  room = budget - dense_cost
  max_rank = max((min(p) for p in plan if isinstance(p, tuple)), default=0)
  rank = 0
  while rank < max_rank and _lowrank_cost(plan, rank + 1) <= room:
    rank += 1
  if rank == 0:
    raise ValueError(f'low-rank budget {budget} does not fit rank 1 ({dense_cost} dense 1-D '
                     f'entries + {_lowrank_cost(plan, 1)} for rank 1)')
  return rank


def init_lowrank(base, budget=None, *, rank=None, seed: int = 0, one_d: str = 'dense',
                 min_ndim: int = 0, exclude=None, a_init_std=None):
  """({'a': N(0, std) [m, r], 'b': zeros [r, n]} per matrix, dense zeros per 1-D leaf; None):
  the delta starts at zero and B gets gradient at once (LoRA). std defaults to 1/sqrt(m).
  Give `budget` (rank from `lowrank_rank`) or `rank`."""
  if (budget is None) == (rank is None):
    raise ValueError('give exactly one of budget and rank')
  if rank is None:
    rank = lowrank_rank(base, budget, one_d=one_d, min_ndim=min_ndim, exclude=exclude)
  plan, _ = _lowrank_plan(base, one_d, min_ndim, exclude)
  key = jax.random.PRNGKey(seed)
  trainable = []
  for index, ((_, leaf), role) in enumerate(zip(_leaves(base), plan)):
    if isinstance(role, tuple):
      m, n = role
      r = min(rank, m, n)
      std = (1.0 / math.sqrt(m)) if a_init_std is None else a_init_std
      a = std * jax.random.normal(jax.random.fold_in(key, index), (m, r), jnp.float32)
      trainable.append({'a': a, 'b': jnp.zeros((r, n), jnp.float32)})
    elif role == 'dense':
      trainable.append(jnp.zeros(np.shape(leaf), jnp.float32))
    else:
      trainable.append(_empty())
  return _build(base, trainable), _build(base, [None] * len(plan))


def init_full(base, *, min_ndim: int = 0, exclude=None):
  """(dense zeros per eligible leaf, None)."""
  trainable = [jnp.zeros(np.shape(leaf), jnp.float32) if is_eligible(path, leaf, min_ndim, exclude)
               else _empty() for path, leaf in _leaves(base)]
  return _build(base, trainable), _build(base, [None] * len(trainable))


def _init_sparse_within(base, budget=None, **config):
  """init_sparse, checking that `budget` is reachable (the pruning reaches it later)."""
  trainable, fixed = init_sparse(base, **config)
  if budget is not None:
    sparse_density(trainable, budget)
  return trainable, fixed


def _init_full_delta(base, budget=None, **config):
  """init_full; a budget (topk's) applies to what ships, not to what trains."""
  del budget
  return init_full(base, **config)


def _check_lowrank_budget(base, budget: int, *, min_ndim: int = 0, exclude=None):
  lowrank_rank(base, budget, min_ndim=min_ndim, exclude=exclude)


def init(method: str, base, budget=None, **config):
  """(trainable, fixed) of a fresh diff. budget: required for hashed/lowrank (lowrank also takes
  rank=...); for sparse it is only checked here (prune to it with sparsity.reprune at
  sparse_density(trainable, budget)); topk trains without it; full takes none."""
  record = get_method(method)
  if not record.budgeted and budget is not None:
    raise ValueError(f'the {method} method takes no budget')
  return record.init(base, budget, **config)


# ----------------------------------------------------------------------------- dense

def _mix32(x):
  """jnp twin of package.mix32 (uint32 arithmetic wraps the same way)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7feb352d)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846ca68b)
  return x ^ (x >> 16)


def hash_buckets(n: int, seed, k: int):
  """(bucket int32 [n], sign float32 [n]) exactly as package.hash_buckets computes them."""
  seed = jnp.asarray(seed, jnp.uint32)
  index = jnp.arange(n, dtype=jnp.uint32)
  bucket_key = _mix32(seed ^ jnp.uint32(package.BUCKET_SALT))
  sign_key = _mix32(seed ^ jnp.uint32(package.SIGN_SALT))
  bucket = (_mix32(index ^ bucket_key) % jnp.uint32(k)).astype(jnp.int32)
  sign = 1.0 - 2.0 * (_mix32(index ^ sign_key) >> 31).astype(jnp.float32)
  return bucket, sign


def _sparse_dense(leaf, t, f):
  if np.size(f) == 0:
    return jnp.zeros(np.shape(leaf), jnp.float32)
  return jnp.where(f, t, jnp.zeros_like(t))


def _hashed_dense(leaf, t, f):
  bucket, sign = hash_buckets(int(np.size(leaf)), f, t.shape[0])
  return (sign * t[bucket]).reshape(np.shape(leaf))


def _lowrank_dense(leaf, t, f):
  if isinstance(t, Mapping):                      # a matrix's factors; 1-D leaves are dense
    product = jnp.matmul(t['a'], t['b'], precision=jax.lax.Precision.HIGHEST)
    return product.reshape(np.shape(leaf))
  return t


def _full_dense(leaf, t, f):
  del leaf, f
  return t


def _fixed_or_none(base, fixed):
  return _build(base, [None] * len(_leaves(base))) if fixed is None else fixed


def _dense_leaf(record, leaf, t, f):
  if _stores_nothing(t):
    return jnp.zeros(np.shape(leaf), jnp.float32)
  return record.dense_leaf(leaf, t, f)


def dense(method: str, trainable, fixed, base):
  """The dense float32 delta, one array per base leaf (base is used for shapes only)."""
  record = get_method(method)
  fixed = _fixed_or_none(base, fixed)
  return jax.tree.map(lambda leaf, t, f: _dense_leaf(record, leaf, t, f), base, trainable, fixed)


def materialize(method: str, trainable, fixed, base):
  """params = stop_gradient(base) + dense(...), leaf by leaf in the base dtype."""
  delta = dense(method, trainable, fixed, base)
  return jax.tree.map(
      lambda b, d: jax.lax.stop_gradient(b) + d.astype(jnp.result_type(b)), base, delta)


# ----------------------------------------------------------------------------- payload

def _count_kept(trainable, fixed) -> int:
  return int(sum(np.count_nonzero(np.asarray(m)) for t, m in
                 zip(jax.tree_util.tree_leaves(trainable), jax.tree_util.tree_leaves(fixed))
                 if np.size(t)))


def _count_trainable(trainable, fixed) -> int:
  del fixed
  return int(sum(np.size(t) for t in jax.tree_util.tree_leaves(trainable)))


def count_payload(method: str, trainable, fixed) -> int:
  """Stored values: kept entries (sparse; topk once shipped), buckets (hashed), A+B+dense
  entries (lowrank), all eligible entries (full)."""
  return get_method(method).count(trainable, fixed)


def _sparse_payload(t, f):
  values = np.asarray(t, np.float32)
  indices = np.flatnonzero(np.asarray(f, bool))
  if not indices.size:
    return None
  return {'kind': SPARSE, 'indices': indices, 'values': values.ravel()[indices]}


def _hashed_payload(t, f):
  return {'kind': HASHED, 'seed': int(f), 'buckets': np.asarray(t, np.float32)}


def _full_payload(t, f):
  del f
  return {'kind': FULL, 'values': np.asarray(t, np.float32)}


def _lowrank_payload(t, f):
  if isinstance(t, Mapping):
    return {'kind': LOWRANK, 'a': np.asarray(t['a']), 'b': np.asarray(t['b'])}
  return _full_payload(t, f)


def to_payload(method: str, trainable, fixed, base) -> dict:
  """{'/'-joined path: fields} for package.export; leaves storing nothing are left out. For topk
  this takes the shipped diff (`ship` compresses first)."""
  record = get_method(method)
  fixed = _fixed_or_none(base, fixed)
  payload = {}
  for path, _, t, f in _per_leaf(base, trainable, fixed):
    fields = None if _stores_nothing(t) else record.payload_leaf(t, f)
    if fields is not None:
      payload[path] = fields
  return payload


def _sparse_quantized(t, f, value_dtype):
  values = np.asarray(t, np.float32)
  mask = np.asarray(f, bool)
  kept = np.zeros_like(values)
  kept[mask] = package.roundtrip(values[mask], value_dtype)
  return jnp.asarray(kept)


def _full_quantized(t, f, value_dtype):
  del f
  return jnp.asarray(package.roundtrip(np.asarray(t, np.float32), value_dtype))


def _lowrank_quantized(t, f, value_dtype):
  if isinstance(t, Mapping):
    return {key: _full_quantized(t[key], None, value_dtype) for key in ('a', 'b')}
  return _full_quantized(t, f, value_dtype)


def quantized(method: str, trainable, fixed, base, value_dtype: str):
  """`trainable` with every stored value replaced by what the device decodes (package.roundtrip,
  one int8 scale per stored array, as export does); pruned sparse entries become 0. Materializing
  it reproduces package.apply bit for bit for sparse, hashed and full (low-rank: up to the
  float32 matmul rounding; use export's returned params as the exact next base)."""
  record = get_method(method)
  fixed = _fixed_or_none(base, fixed)
  out = []
  for _, _, t, f in _per_leaf(base, trainable, fixed):
    if _stores_nothing(t):
      out.append(jax.tree.map(lambda x: jnp.asarray(np.asarray(x, np.float32)), t))
    else:
      out.append(record.quantized_leaf(t, f, value_dtype))
  return _build(base, out)


def ship(method: str, trainable, fixed, base, budget=None, *, min_ndim: int = 0):
  """(package method, payload) of a trained diff: what package.export writes. Only topk needs
  `budget` (the entries it keeps) and `min_ndim` (which leaves compete for them)."""
  record = get_method(method)
  if record.compress is not None:
    trainable, fixed = record.compress(trainable, budget, min_ndim=min_ndim)
  return record.ships, to_payload(method, trainable, fixed, base)


def compress_top_k(full_delta, budget: int, per_leaf: bool = False, *, min_ndim: int = 0,
                   exclude=None):
  """The 'fine-tune fully, then compress' baseline: (values, mask) keeping exactly `budget`
  largest-|.| entries of a dense delta over eligible leaves (globally, or spread per leaf in
  proportion to size). values = delta * mask (jnp float32); the pair is a sparse diff."""
  leaves = _leaves(full_delta)
  scores = [np.abs(np.asarray(leaf, np.float32)) if is_eligible(path, leaf, min_ndim, exclude)
            else np.zeros(_EMPTY, np.float32) for path, leaf in leaves]
  kept = sparsity.top_k_mask(scores, budget, per_leaf)
  masks, values = [], []
  for (_, leaf), mask in zip(leaves, kept):
    if mask.size == 0:
      mask = np.zeros(np.shape(leaf), bool)
    masks.append(mask)
    values.append(jnp.where(mask, jnp.asarray(leaf, jnp.float32), 0.0))
  return _build(full_delta, values), _build(full_delta, masks)


# ----------------------------------------------------------------------------- the methods

@dataclasses.dataclass(frozen=True)
class Method:
  """Everything that differs between diff methods. Leaf functions see one base leaf's subtrees
  (t: trainable, f: fixed) and only leaves that store something; the rest add 0 and ship
  nothing. `count`, `payload_leaf` and `quantized_leaf` describe the diff as shipped, i.e. after
  `compress` where there is one."""
  name: str
  init: Callable          # (base, budget, **config) -> (trainable, fixed)
  dense_leaf: Callable    # (base leaf, t, f) -> the leaf's dense float32 delta
  count: Callable         # (trainable, fixed) -> stored values
  payload_leaf: Callable  # (t, f) -> package fields, or None when the leaf ships nothing
  quantized_leaf: Callable  # (t, f, value_dtype) -> t holding what the device decodes
  ships: str              # the package method (package.METHODS) its files are written as
  budgeted: bool = True   # takes a budget of stored values (full ships everything)
  seeded: bool = False    # init takes seed=
  masked: bool = False    # fixed is a bool mask over the delta: pruned in training or preset
  indexed: bool = False   # ships an index per value: the byte budget pays for both
  check_budget: Callable | None = None   # (base, budget, min_ndim=) raises if it cannot fit
  compress: Callable | None = None   # (trained trainable, budget, min_ndim=) -> shipped diff


_FULL = Method(FULL, _init_full_delta, _full_dense, _count_trainable, _full_payload,
               _full_quantized, ships=FULL, budgeted=False)
_SPARSE = Method(SPARSE, _init_sparse_within, _sparse_dense, _count_kept, _sparse_payload,
                 _sparse_quantized, ships=SPARSE, masked=True, indexed=True)
METHODS = {
    SPARSE: _SPARSE,
    HASHED: Method(HASHED, init_hashed, _hashed_dense, _count_trainable, _hashed_payload,
                   _full_quantized, ships=HASHED, seeded=True),
    LOWRANK: Method(LOWRANK, init_lowrank, _lowrank_dense, _count_trainable, _lowrank_payload,
                    _lowrank_quantized, ships=LOWRANK, seeded=True,
                    check_budget=_check_lowrank_budget),
    # Trains like full; what ships is the sparse diff of its largest entries.
    TOPK: dataclasses.replace(_FULL, name=TOPK, count=_SPARSE.count,
                              payload_leaf=_SPARSE.payload_leaf,
                              quantized_leaf=_SPARSE.quantized_leaf, ships=SPARSE, budgeted=True,
                              indexed=True, compress=compress_top_k),
    FULL: _FULL,
}


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise ValueError(f'unknown diff method {name!r} (expected one of {tuple(METHODS)})')
  return METHODS[name]

