"""Making the fast branches: gradual magnitude pruning and SVD initialisation of factorizations.

Pruning: a sparse branch's matrices carry 0/1 masks (the `masks` collection). At the start of
every round (an epoch, or `prune_every` steps where a run is shorter than a few epochs) the
masks are re-derived from |weight| per matrix at the density of a cubic schedule that falls from
1 (dense) to the branch's budget over `prune_epochs` rounds, then stays there, so the last
rounds train with fixed masks (Zhu & Gupta's gradual pruning). Per-matrix budgets make the
FLOPs of every matrix exactly the budget, which is what the latency simulator charges. With a
group size (`model.encoder.sparse_group`) the masks keep whole row segments of that many output
columns, the same count in every group (`asr.sparsity.group_mask`), under the same schedule:
the structure that streams faster than the dense product (`asr.lstm.to_streaming`).

Factorization: where a trained dense model exists, a rank-r branch starts from the truncated SVD
of the dense weights, W ~= (U_r sqrt(S_r)) (sqrt(S_r) V_r^T); a dense or sparse branch starts as
a copy. The arbitrator always starts fresh.
"""
import math

import jax
import numpy as np

from asr import sparsity
from asr import train as train_lib


def pruning_parametrization(specs, total_steps: int, steps_per_epoch: int,
                            prune_epochs: int, group: int = 0,
                            prune_every: int = 0) -> train_lib.Parametrization:
  """Plain training of the params, with the sparse branches' masks re-derived every round of
  `prune_every` steps (0: every epoch), falling to the budget over `prune_epochs` rounds
  (element-wise, or in groups of `group` output columns)."""
  sparse = {s.name: s.budget for s in specs if s.kind == 'sparse'}
  base = train_lib.plain_parametrization()
  if not sparse:
    return base
  round_steps = prune_every or steps_per_epoch
  num_rounds = max(1, math.ceil(total_steps / round_steps))
  prune_rounds = min(prune_epochs, num_rounds - 1)

  def on_round(index, trainable, fixed):
    masks = jax.tree_util.tree_map(np.asarray, fixed['masks'])
    for name, budget in sparse.items():
      density = sparsity.density_schedule(index, num_rounds, budget, prune_rounds)
      branch_masks = masks['encoder']['branches'][name]
      branch_params = trainable['encoder']['branches'][name]
      masks['encoder']['branches'][name] = magnitude_masks(branch_params, branch_masks,
                                                           density, group)
    return trainable, dict(fixed, masks=masks)

  return train_lib.Parametrization(init=base.init, apply=base.apply, on_round=on_round,
                                   round_steps=prune_every)


def magnitude_masks(params, masks, density: float, group: int = 0):
  """For every masked kernel: keep its round(density * size) largest-|w| entries, or with a
  group size its round(density * rows) largest row segments per group of output columns."""
  def one(path, mask):
    node = params
    for key in path:
      node = node[key.key]
    kernel = np.asarray(node)
    if group:
      return sparsity.group_mask(kernel, density, group).astype(mask.dtype)
    return sparsity.magnitude_mask(kernel, density).astype(mask.dtype)
  return jax.tree_util.tree_map_with_path(one, masks)


def budget_masks(variables, specs, group: int = 0):
  """The variables with every sparse branch pruned at its budget (the schedule's last masks),
  for timing an untrained model at the cost it will have."""
  if not any(spec.kind == 'sparse' for spec in specs):
    return variables
  masks = jax.tree_util.tree_map(np.asarray, variables['masks'])
  for spec in specs:
    if spec.kind == 'sparse':
      masks['encoder']['branches'][spec.name] = magnitude_masks(
          variables['params']['encoder']['branches'][spec.name],
          masks['encoder']['branches'][spec.name], spec.budget, group)
  return {**variables, 'masks': masks}


def svd_factors(w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
  """Best rank-r factors (a [m, r], b [r, n]) of w, with the singular values split evenly."""
  u, s, vt = np.linalg.svd(np.asarray(w, np.float64), full_matrices=False)
  root = np.sqrt(s[:rank])
  return (u[:, :rank] * root).astype(np.float32), (root[:, None] * vt[:rank]).astype(np.float32)


def dense_encoder_layers(source_params) -> list[dict]:
  """The per-layer weights of a trained encoder's first dense branch (e.g. the full baseline,
  'main:dense')."""
  branches = source_params['encoder'].get('branches')
  if not isinstance(branches, dict):
    raise ValueError("init_from: the source model's encoder has no 'branches' (a checkpoint "
                     'from before the one-encoder layout: retrain it)')
  dense = [b for b in branches.values() if 'kernel' in b['layer_0']['wx']]
  if not dense:
    raise ValueError('init_from: the source model has no dense branch to initialise from')
  layers = sorted((k for k in dense[0] if k.startswith('layer_')), key=lambda k: int(k[6:]))
  return [dense[0][k] for k in layers]


def init_from_dense(variables, source_params):
  """AmNet variables with every branch, the predictor, the joint (and a CTC head both have)
  taken from a dense model."""
  params = jax.tree_util.tree_map(np.asarray, variables['params'])
  source = jax.tree_util.tree_map(np.asarray, source_params)
  layers = dense_encoder_layers(source)
  for name, branch in params['encoder']['branches'].items():
    if len(layers) != len(branch):
      raise ValueError(f'init_from: source has {len(layers)} encoder layers, branch {name!r} '
                       f'has {len(branch)}')
    for i, src in enumerate(layers):
      dst = branch[f'layer_{i}']
      dst['bias'] = src['bias']
      for m in ('wx', 'wh', 'wp'):
        if m not in dst:
          continue
        w = src[m]['kernel']
        if w.shape != _dense_shape(dst[m]):
          raise ValueError(f'init_from: {name}/layer_{i}/{m} is {_dense_shape(dst[m])}, the '
                           f'source is {w.shape}')
        if 'kernel' in dst[m]:
          dst[m]['kernel'] = w
        else:
          dst[m]['a'], dst[m]['b'] = svd_factors(w, dst[m]['a'].shape[1])
  for part in ('predictor', 'joint', 'ctc_head', 'simple_enc', 'simple_pred'):
    if part in params and part in source:
      params[part] = source[part]
  return {**variables, 'params': params}


def _dense_shape(weights) -> tuple[int, int]:
  if 'kernel' in weights:
    return tuple(weights['kernel'].shape)
  return (weights['a'].shape[0], weights['b'].shape[1])

