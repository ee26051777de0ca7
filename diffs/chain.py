"""Consecutive model updates shipped as neural diffs, one chain per method and budget.

The device starts with the base model (trained on the `base` domain). Update k trains a diff on
`update_k` data plus a replay sample of earlier domains, starting from what the device holds
(base + every earlier diff, exactly as `package.apply` rebuilt it), exports the update package,
applies it the way a device would (numpy, `diffs.package.apply`), and evaluates the result on the
new domain's test split and on the base domain's (forgetting). Each method runs its own chain:

  sparse    masked delta, pruned every round (an epoch or `prune_every` steps) from dense
            toward the budget over `prune_rounds` rounds, then fixed (or, with
            `diffs.sparse_mask=fisher`, fixed before the first step: `diffs/fisher.py`);
  hashed    K shared buckets with sign hashing, only buckets + seed ship;
  lowrank   A @ B per weight matrix (LoRA-style), rank set by the budget;
  topk      fine-tune everything, then keep the budget's largest entries of the change
            (the "compress after training" baseline);
  full      fine-tune everything and ship the whole model (the accuracy reference).

Training goes through `asr.train.train` with a `Parametrization` whose trainable pytree is the
delta and whose fixed pytree holds the frozen base and the diff's masks or seeds.
"""
import dataclasses
import json
import math
import os
import shutil

import jax
import numpy as np

from asr import sparsity
from asr import train as train_lib
from asr.data import batching
from diffs import delta as delta_lib
from diffs import fisher
from diffs import package


@dataclasses.dataclass(frozen=True)
class Budget:
  """A byte budget (fraction of the full model's package bytes) and the stored values it buys."""
  fraction: float
  nbytes: int
  entries: int


def budget_for(method: str, base, fraction: float, value_dtype: str, min_ndim: int) -> Budget:
  full_bytes = package.full_model_bytes(base, value_dtype)
  nbytes = int(fraction * full_bytes)
  entries = delta_lib.entries_for_bytes(nbytes, method, value_dtype)
  if delta_lib.get_method(method).indexed:   # the index cost depends on the density it buys
    eligible = delta_lib.eligible_entries(base, min_ndim)
    entries = delta_lib.entries_for_bytes(nbytes, method, value_dtype,
                                          density=max(entries, 1) / eligible)
  return Budget(fraction, nbytes, max(1, entries))


def infeasible(method: str, base, budget: Budget | None, min_ndim: int) -> str | None:
  """Why `method` cannot train a diff within `budget` on `base` (None if it can), e.g. the
  low-rank delta needs rank 1 on every matrix plus its 1-D deltas."""
  check = delta_lib.get_method(method).check_budget
  if check is None:
    return None
  try:
    check(base, budget.entries, min_ndim=min_ndim)
  except ValueError as e:
    return str(e)
  return None


def parametrization(method: str, base, budget: Budget | None, *, min_ndim: int, seed: int,
                    num_rounds: int, prune_rounds: int, round_steps: int = 0,
                    mask_scores=None) -> train_lib.Parametrization:
  """Trainable = the delta; fixed = {'base': frozen params, 'diff': masks/seeds, + collections}.
  A sparse diff is pruned by magnitude at the start of each of `num_rounds` rounds of
  `round_steps` steps (0: an epoch), reaching the budget at round `prune_rounds`; given
  `mask_scores` (a pytree like `base`), it keeps the budget's highest-scoring entries from the
  first step instead (`diffs.fisher`)."""
  record = delta_lib.get_method(method)
  config = {'min_ndim': min_ndim}
  if record.seeded:
    config['seed'] = seed
  trainable0, diff_fixed0 = delta_lib.init(
      method, base, budget.entries if record.budgeted else None, **config)
  if mask_scores is not None:
    if not record.masked:
      raise ValueError(f'mask scores are for the sparse diff, not {method!r}')
    diff_fixed0 = fisher.fisher_mask(mask_scores, trainable0, budget.entries)

  def init(variables):
    others = {k: v for k, v in variables.items() if k != 'params'}
    return trainable0, {'base': base, 'diff': diff_fixed0, **others}

  def apply(trainable, fixed):
    others = {k: v for k, v in fixed.items() if k not in ('base', 'diff')}
    return {'params': delta_lib.materialize(method, trainable, fixed['diff'], fixed['base']),
            **others}

  on_round = None
  if record.masked and mask_scores is None:
    final = delta_lib.sparse_density(trainable0, budget.entries)
    prune_rounds = min(prune_rounds, num_rounds - 1)

    def on_round(r, trainable, fixed):
      density = sparsity.density_schedule(r, num_rounds, final, prune_rounds)
      trainable, masks = sparsity.reprune(trainable, fixed['diff'], density)
      return trainable, dict(fixed, diff=masks)
  return train_lib.Parametrization(init=init, apply=apply, on_round=on_round,
                                   round_steps=round_steps)


def export_update(path: str, method: str, trainable, fixed, base, budget: Budget | None,
                  value_dtype: str, min_ndim: int, meta: dict) -> dict:
  """Writes the update package of a trained diff; returns export's info (params = applied)."""
  package_method, payload = delta_lib.ship(method, trainable, fixed['diff'], base,
                                           budget.entries if budget else None, min_ndim=min_ndim)
  return package.export(path, package_method, payload, base, value_dtype=value_dtype,
                        meta=meta)


def replay_sample(sources, count: int, seed: int):
  """`count` examples drawn evenly (without replacement) from the earlier domains' sources."""
  rng = np.random.default_rng(seed)
  per = [count // len(sources) + (1 if i < count % len(sources) else 0)
         for i in range(len(sources))]
  picks = [batching.Subset(s, rng.choice(len(s), size=min(n, len(s)), replace=False))
           for s, n in zip(sources, per)]
  return batching.Concat(*picks)


def run_update(cfg, workdir: str, model, method: str, device_params, budget: Budget | None,
               train_data, stats_path: str, update: int, log=print) -> dict:
  """Trains, exports and applies one update; returns info with 'params' = the device's new
  params and 'bytes'. Resumes: a finished update is read back from its files."""
  d = cfg.diffs
  done = os.path.join(workdir, 'update.json')
  device_path = os.path.join(workdir, 'device.npz')
  if os.path.exists(done) and os.path.exists(device_path):
    with open(done) as f:
      info = json.load(f)
    info['params'] = package.load_params(device_path)
    return info
  os.makedirs(workdir, exist_ok=True)
  shutil.copy(stats_path, os.path.join(workdir, 'feature_stats.json'))   # the base's features
  per_round = d.prune_every or train_data.batches_per_epoch(cfg.train.batch_size)
  scores = None
  if delta_lib.get_method(method).masked and d.sparse_mask == 'fisher':
    stats = train_lib.feature_stats(train_data, cfg.frontend, workdir)   # the copy above
    scores = fisher.squared_gradients(cfg, model, device_params, train_data, stats,
                                      d.fisher_batches)
  param = parametrization(method, device_params, budget, min_ndim=d.min_ndim,
                          seed=cfg.seed + update,
                          num_rounds=max(1, math.ceil(cfg.train.steps / per_round)),
                          prune_rounds=d.prune_rounds, round_steps=d.prune_every,
                          mask_scores=scores)
  init_vars = {'params': device_params}
  train_lib.train(cfg, os.path.join(workdir, 'train'), model, train_data, parametrization=param,
                  init_vars=init_vars, log=log)
  trainable, fixed = train_lib.restore_state(cfg, os.path.join(workdir, 'train'), param,
                                             init_vars)
  meta = {'update': update, 'method': method,
          'budget_fraction': budget.fraction if budget else 1.0}
  info = export_update(os.path.join(workdir, f'update_{update}.diff'), method, trainable, fixed,
                       device_params, budget, d.value_dtype, d.min_ndim, meta)
  # The device's side: apply the package file to what it holds, in numpy.
  applied = package.apply(info['path'], device_params)
  package.save_params(device_path, applied)
  record = {'bytes': info['bytes'], 'stored_values': info['stored_values'],
            'base_fingerprint': info['base_fingerprint'],
            'result_fingerprint': info['result_fingerprint'], 'package': info['path']}
  with open(done + '.tmp', 'w') as f:
    json.dump(record, f, indent=1)
  os.replace(done + '.tmp', done)
  return dict(record, params=applied)


def to_numpy(tree):
  return jax.tree_util.tree_map(np.asarray, tree)
