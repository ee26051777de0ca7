"""Consecutive model updates shipped as neural diffs, one chain per method and budget.

The device starts with the base model (trained on the `base` domain). Update k trains a diff on
`update_k` data plus a replay sample of earlier domains, starting from what the device holds
(base + every earlier diff, exactly as `package.apply` rebuilt it), exports the update package,
applies it the way a device would (numpy, `diffs.package.apply`), and evaluates the result on the
new domain's test split and on the base domain's (forgetting). Beside the package's bytes it
records what a generic binary delta of the same applied model costs (`diffs.binary_delta`: the
device's params file, zstd against the old one, and bsdiff4). Each method runs its own chain:

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

`run_chain` runs every configured chain and returns the table's rows; the caller hands it the
model, the loaded data and the evaluator (experiments/diffs_experiment.py builds them from the
config and writes the table). Under its root: `base_eval.json` and
`chains/<method>@<budget>/update_<k>/` (the diff's training run, the package `update_<k>.diff`,
the device's params after applying it, and `eval.json`); everything finished is read back.
"""
from collections.abc import Callable, Mapping
import dataclasses
import json
import math
import os
import shutil
import time

import jax
import ml_collections
import numpy as np

from asr import sparsity
from asr import train as train_lib
from asr.data import batching
from diffs import delta as delta_lib
from diffs import files
from diffs import fisher
from diffs import package
from diffs import signing
from diffs import summary


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
                  value_dtype: str, min_ndim: int, meta: dict, key) -> dict:
  """Writes the update package of a trained diff; returns export's info (params = applied)."""
  package_method, payload = delta_lib.ship(method, trainable, fixed['diff'], base,
                                           budget.entries if budget else None, min_ndim=min_ndim)
  return package.export(path, package_method, payload, base, value_dtype=value_dtype,
                        meta=meta, key=key, update=meta['update'])


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
  params, 'bytes', 'binary_delta' (`binary_delta.sizes` of the same step) and 'train_s' (the
  training's wall seconds, compilation included, export and evaluation not). Resumes: a
  finished update is read back from its files."""
  dcfg = cfg.diffs
  done = os.path.join(workdir, 'update.json')
  device_path = os.path.join(workdir, 'device.npz')
  if os.path.exists(done) and os.path.exists(device_path):
    with open(done) as f:
      record = json.load(f)
    # Records from before the rate was recorded were trained at the config's (one rate a run).
    lr = record.get('lr', cfg.train.lr)
    if lr != cfg.train.lr:
      raise ValueError(f'{done}: this update was trained at lr {lr:g}, the config asks '
                       f'for {cfg.train.lr:g} (diffs.lr / diffs.lrs); use another workdir')
    applied = package.load_params(device_path)
    if 'binary_delta' not in record:   # finished before the baseline was recorded
      record['binary_delta'] = _binary_delta(dcfg, device_params, applied)
      _write_json(done, record)
    if record.get('train_s') is None:   # finished before the training time was recorded
      record['train_s'] = _train_seconds(workdir)
      if record['train_s'] is not None:
        _write_json(done, record)
    return dict(record, lr=lr, params=applied)
  os.makedirs(workdir, exist_ok=True)
  shutil.copy(stats_path, os.path.join(workdir, 'feature_stats.json'))   # the base's features
  per_round = dcfg.prune_every or train_data.batches_per_epoch(
      train_lib.batch_sizes(cfg, train_data))
  scores = None
  if delta_lib.get_method(method).masked and dcfg.sparse_mask == 'fisher':
    stats = train_lib.feature_stats(train_data, cfg.frontend, workdir)   # the copy above
    scores = fisher.squared_gradients(cfg, model, device_params, train_data, stats,
                                      dcfg.fisher_batches)
  param = parametrization(method, device_params, budget, min_ndim=dcfg.min_ndim,
                          seed=cfg.seed + update,
                          num_rounds=max(1, math.ceil(cfg.train.steps / per_round)),
                          prune_rounds=dcfg.prune_rounds, round_steps=dcfg.prune_every,
                          mask_scores=scores)
  init_vars = {'params': device_params}
  train_lib.train(cfg, os.path.join(workdir, 'train'), model, train_data, parametrization=param,
                  init_vars=init_vars, log=log)
  trainable, fixed = train_lib.restore_state(cfg, os.path.join(workdir, 'train'), param,
                                             init_vars)
  meta = {'update': update, 'method': method,
          'budget_fraction': budget.fraction if budget else 1.0}
  # Signed by diffs.signing_key, else by a chain-local maker key in the chain's directory.
  chain_key = os.path.join(os.path.dirname(os.path.abspath(workdir)), 'maker.key')
  key = signing.maker_key(dcfg.get('signing_key', ''), chain_key)
  info = export_update(os.path.join(workdir, f'update_{update}.diff'), method, trainable, fixed,
                       device_params, budget, dcfg.value_dtype, dcfg.min_ndim, meta, key)
  # The device's side: apply the package file to what it holds, in numpy.
  applied = package.apply(info['path'], device_params, trusted=[info['signer']])
  package.save_params(device_path, applied)
  record = {'bytes': info['bytes'], 'lr': cfg.train.lr, 'stored_values': info['stored_values'],
            'base_fingerprint': info['base_fingerprint'],
            'result_fingerprint': info['result_fingerprint'], 'package': info['path'],
            'binary_delta': _binary_delta(dcfg, device_params, applied),
            'train_s': _train_seconds(workdir)}
  _write_json(done, record)
  return dict(record, params=applied)


def _binary_delta(dcfg, old, new) -> dict:
  """`binary_delta.sizes` of one update, or None per figure with `diffs.binary_delta` off:
  zstd -19 and bsdiff4 took 14 s over the 4 MB CPU model's params file on a shared 2-core CPU,
  and grow faster than the file: minutes per update over the paper-size model's 67 MB."""
  if not dcfg.get('binary_delta', True):
    return {'binary_delta_bytes': None, 'bsdiff4_bytes': None}
  from diffs import binary_delta  # pylint: disable=g-import-not-at-top
  return binary_delta.sizes(old, new)


def _train_seconds(workdir: str) -> float | None:
  """The update's training wall time from its train_summary.json (summed over resumes by
  asr.train), or None where the file or its figure is missing."""
  path = os.path.join(workdir, 'train', 'train_summary.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    wall = json.load(f).get('train', {}).get('wall_s')
  return None if wall is None else float(wall)


def _write_json(path: str, record: dict) -> None:
  files.atomic_write(path, json.dumps(record, indent=1).encode())


def to_numpy(tree):
  return jax.tree_util.tree_map(np.asarray, tree)


# ----------------------------------------------------------------------------- the chains

def learning_rates(dcfg) -> dict[str, list[float]]:
  """{method: [learning rates]} of every configured method: `diffs.lrs` where it names the
  method ('sparse=1e-2,full=3e-3'; a grid 'sparse=3e-3|1e-2|3e-2' trains one chain per rate),
  else [`diffs.lr`]. A delta that starts at zero and may move few entries wants a larger step
  than full fine-tuning, so one table's methods differ."""
  rates = {}
  for item in filter(None, dcfg.get('lrs', '').split(',')):
    method, _, values = item.partition('=')
    try:
      rates[method.strip()] = [float(v) for v in values.split('|')]
    except ValueError:
      raise ValueError(f'config.diffs.lrs: {item!r} is not method=lr or method=lr|lr|...'
                       ) from None
  unknown = sorted(set(rates) - set(delta_lib.METHODS))
  if unknown:
    raise ValueError(f'config.diffs.lrs: {unknown} are not methods '
                     f'({", ".join(delta_lib.METHODS)})')
  rates = {m: rates.get(m, [dcfg.lr]) for m in dcfg.methods.split(',')}
  bad = {m: r for m, r in rates.items() if not all(v > 0 for v in r) or len(set(r)) < len(r)}
  if bad:
    raise ValueError(f'config.diffs.lrs: learning rates must be > 0 and distinct, not {bad}')
  return rates


def update_config(cfg, lr: float | None = None) -> ml_collections.ConfigDict:
  """The training config of one update: the diff's steps, the chain's learning rate (None:
  `diffs.lr`) and warm-up. A routed encoder's arbitrator stays at the temperature it was
  deployed at (the end of its anneal): an update starting again from `temperature_start`
  would soften the routing the device runs."""
  ucfg = ml_collections.ConfigDict(cfg.to_dict())
  ucfg.train.steps = cfg.diffs.steps_per_update
  ucfg.train.lr = cfg.diffs.lr if lr is None else lr
  ucfg.train.warmup_steps = cfg.diffs.warmup_steps
  ucfg.train.checkpoint_every = max(1, cfg.diffs.steps_per_update // 2)
  routing = ucfg.model.encoder.routing
  routing.temperature_start = routing.temperature_end
  return ucfg


def domains(updates: int) -> list[str]:
  """The data domains in order: the base model's, then one per update."""
  return ['base'] + [f'update_{k}' for k in range(1, updates + 1)]


def update_data(sources: Mapping, update: int, buckets: batching.Buckets,
                replay_fraction: float, seed: int) -> tuple[batching.Dataset, int]:
  """(training split, replayed examples) of update k: domain update_k plus a replay sample of
  every earlier domain, `replay_fraction` of update_k's size."""
  new = f'update_{update}'
  earlier = [sources[name] for name in domains(update - 1)]
  replay = replay_sample(earlier, int(replay_fraction * len(sources[new])), seed)
  return batching.Dataset(batching.Concat(sources[new], replay), buckets, name=new), len(replay)


def evaluate_cached(evaluator, params, dataset, stats, cache: str, key: str, limit: int,
                    summarize=None) -> dict:
  """{'wer', 'cer'} in %, plus `summarize(rows)` of the per-utterance rows if given (e.g. an
  AmNet's routing shares and latency), read back from `cache` when this key was evaluated
  with the same figures before."""
  results = json.load(open(cache)) if os.path.exists(cache) else {}
  cached = results.get(key)
  if not isinstance(cached, dict) or (summarize is not None and 'summary' not in cached):
    os.makedirs(os.path.dirname(cache) or '.', exist_ok=True)
    limit = limit or len(dataset)
    if summarize is None:
      out, summary = evaluator({'params': params}, dataset, stats, limit=limit), None
    else:
      out, rows = evaluator({'params': params}, dataset, stats, limit=limit, return_rows=True)
      summary = summarize(rows)
    results[key] = {'wer': 100 * out['wer'], 'cer': 100 * out['cer']}
    if summary is not None:
      results[key]['summary'] = summary
    _write_json(cache, results)
  return results[key]


@dataclasses.dataclass(frozen=True)
class Scorer:
  """WER and CER (%) of params on a new domain's eval split and on the base domain's
  (forgetting), each cached in a JSON file beside what it scores."""
  evaluator: Callable     # asr.evaluate.Evaluator: (variables, dataset, stats, limit=) -> metrics
  tests: Mapping          # domain -> its eval split (batching.Dataset)
  stats: dict             # the base model's feature stats
  eval_split: str
  limit: int              # utterances per split; 0 = all
  # rows -> {column: value} of the new domain's split, e.g. a routed model's branch shares and
  # latency (experiments/diffs_experiment.py); None: WER and CER only.
  summarize: Callable | None = None

  def _key(self, domain: str) -> str:
    # Caches written before `eval_split` existed hold the test split's under the bare domain.
    return domain if self.eval_split == 'test' else f'{domain}_{self.eval_split}'

  def __call__(self, params, new: str, cache: str) -> dict:
    new_domain, base = [evaluate_cached(self.evaluator, params, self.tests[domain], self.stats,
                                        cache, self._key(domain), self.limit,
                                        self.summarize if domain == new else None)
                        for domain in (new, 'base')]
    return {'wer_new': new_domain['wer'], 'cer_new': new_domain['cer'],
            'wer_base': base['wer'], 'cer_base': base['cer'], **new_domain.get('summary', {})}


@dataclasses.dataclass(frozen=True)
class Chain:
  method: str
  fraction: float | None   # of the full model's package bytes; None: the method has no budget
  budget: Budget | None
  lr: float
  name: str                # its folder under `chains/`


def plan_chains(dcfg, base_params, log=print) -> tuple[list[Chain], list[str]]:
  """Every configured (method, budget, learning rate) chain that can train, and why each other
  one cannot: all are checked before the first one trains. A method trained at several rates
  (a `diffs.lrs` grid) names its chains `<method>@<budget>_lr<rate>`."""
  chains, skipped = [], []
  rates = learning_rates(dcfg)
  for method in dcfg.methods.split(','):
    budgeted = delta_lib.get_method(method).budgeted
    for fraction in [float(b) for b in dcfg.budgets.split(',')] if budgeted else [None]:
      budget = (None if fraction is None else
                budget_for(method, base_params, fraction, dcfg.value_dtype, dcfg.min_ndim))
      name = f'{method}@{fraction:g}' if fraction else method
      why = infeasible(method, base_params, budget, dcfg.min_ndim)
      if why:
        skipped.append(f'{name} ({why})')
        log(f'[{name}] skipped: {why}')
        continue
      for lr in rates[method]:
        chains.append(Chain(method, fraction, budget, lr,
                            f'{name}_lr{lr:g}' if len(rates[method]) > 1 else name))
  return chains, skipped


def choose_rates(rows: list[dict]) -> list[dict]:
  """The rate grid's choice: for each (method, budget) trained at several rates, every rate's
  mean new-domain WER over its updates and its last base-domain WER; `chosen` marks the lowest
  mean (the smaller rate on a tie). Chains cut short (`diffs.deadline`) are not compared with
  finished ones: a rate needs the most updates any rate of its group reached."""
  groups = {}
  for line in summary.chains(rows):
    groups.setdefault((line['method'], line['budget']), []).append(line)
  table = []
  for by_rate in groups.values():
    if len(by_rate) < 2:
      continue
    most = max(line['updates'] for line in by_rate)
    out = [{'method': line['method'], 'budget': line['budget'], 'lr': line['lr'],
            'updates': line['updates'], 'mean_wer_new': line['mean'],
            'last_wer_base': line['base_last'], 'chosen': ''}
           for line in by_rate]
    finished = [o for o in out if o['updates'] == most]
    min(finished, key=lambda o: (o['mean_wer_new'], o['lr']))['chosen'] = 'yes'
    table += out
  return table


def run_chain(cfg, root: str, *, model, base_dir: str, tests: Mapping, sources: Mapping,
              buckets: batching.Buckets, evaluator, summarize=None,
              log=print) -> tuple[list[dict], list[str]]:
  """Every configured chain of `cfg.diffs.updates` updates from the base model trained in
  `base_dir`, under `root/chains/<name>/update_<k>/`. tests / sources: each domain's eval split
  (batching.Dataset) and raw training source, keyed by `domains`; evaluator: an
  asr.evaluate.Evaluator of `model`; summarize: the `Scorer`'s, for columns beyond WER and CER.
  Returns (table rows: the base model's, then one per update
  of each chain; the chains skipped, with why). Resumes like `run_update`."""
  dcfg = cfg.diffs
  quiet = lambda *_: None
  base_params = to_numpy(train_lib.load_params(base_dir))
  stats_path = os.path.join(base_dir, 'feature_stats.json')
  scores = Scorer(evaluator, tests, train_lib.feature_stats(None, cfg.frontend, base_dir),
                  dcfg.eval_split, dcfg.eval_utterances, summarize)
  full_bytes = package.full_model_bytes(base_params, dcfg.value_dtype)
  rows = [{'method': 'base model', 'budget': '-', 'update': 0, 'bytes': full_bytes,
           'pct_full': 100.0,
           **scores(base_params, 'update_1', os.path.join(root, 'base_eval.json'))}]
  log(f'base model: WER base {rows[0]["wer_base"]:.2f}%, update_1 (before) '
      f'{rows[0]["wer_new"]:.2f}%; full model package {full_bytes} bytes')
  chains, skipped = plan_chains(dcfg, base_params, log)
  # Update k of every chain before update k + 1 of any: a run stopped by `diffs.deadline` (a
  # unix time: a GPU lent for minutes) then holds every method as far as the slowest got. An
  # update starts only if the longest one so far would still end before it.
  devices = {chain.name: base_params for chain in chains}
  per_chain = {chain.name: [] for chain in chains}
  deadline, longest = dcfg.get('deadline', 0.0), 0.0
  for k in range(1, dcfg.updates + 1):
    for chain in chains:
      if len(per_chain[chain.name]) < k - 1:    # an earlier update of this chain was cut
        continue
      if deadline and time.time() + longest > deadline:
        skipped.append(f'{chain.name} update {k} and later (diffs.deadline)')
        log(f'[{chain.name}] update {k}: not started, too close to diffs.deadline')
        continue
      workdir = os.path.join(root, 'chains', chain.name, f'update_{k}')
      new = f'update_{k}'
      train_data, replayed = update_data(sources, k, buckets, dcfg.replay_fraction, cfg.seed + k)
      log(f'[{chain.name}] update {k}/{dcfg.updates}: {len(train_data)} utterances '
          f'({replayed} replayed)')
      update_start = time.perf_counter()
      info = run_update(update_config(cfg, chain.lr), workdir, model, chain.method,
                        devices[chain.name], chain.budget, train_data, stats_path, k, log=quiet)
      devices[chain.name] = info['params']
      row = {'method': chain.method,
             'budget': f'{100 * chain.fraction:g}%' if chain.fraction else 'all',
             'update': k, 'lr': info['lr'], 'bytes': info['bytes'],
             'pct_full': 100 * info['bytes'] / full_bytes,
             'binary_delta_bytes': info['binary_delta']['binary_delta_bytes'],
             'bsdiff4_bytes': info['binary_delta']['bsdiff4_bytes'],
             'train_s': info.get('train_s'),
             **scores(info['params'], new, os.path.join(workdir, 'eval.json'))}
      longest = max(longest, time.perf_counter() - update_start)
      per_chain[chain.name].append(row)
      log(f'[{chain.name}] update {k}: {row["bytes"]} bytes ({row["pct_full"]:.2f}% of full), '
          f'WER {new} {row["wer_new"]:.2f}%, base {row["wer_base"]:.2f}%')
  for chain in chains:                          # the table lists each chain's updates together
    rows += per_chain[chain.name]
  return rows, skipped
