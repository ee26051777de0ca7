"""`launch.py --mode=diffs`: the base model, every method's chain of updates, and the table.

Layout under the workdir: `base/` (the base model), `chains/<method>@<budget>/update_<k>/`
(the diff's training run, the package `update_<k>.diff`, the device's params after applying it,
and `eval.json`), and `diffs_table.{md,csv}` with the plots. Everything resumes: a finished base,
update or evaluation is read back, not redone.
"""
import json
import os
import time

import ml_collections
import numpy as np

from asr import evaluate as evaluate_lib
from asr import train as train_lib
from asr.data import batching
from diffs import chain
from diffs import package
from experiments import data as data_lib
from experiments import models
from experiments import report


_SPLIT_WORDS = {'test': 'held-out voices',
                'test_seen': 'training voices, unseen sentences: the split for choosing settings'}


def update_config(cfg) -> ml_collections.ConfigDict:
  """The training config of one update: the diff's steps, learning rate and warm-up."""
  u = ml_collections.ConfigDict(cfg.to_dict())
  u.train.steps = cfg.diffs.steps_per_update
  u.train.lr = cfg.diffs.lr
  u.train.warmup_steps = cfg.diffs.warmup_steps
  u.train.checkpoint_every = max(1, cfg.diffs.steps_per_update // 2)
  return u


def train_base(cfg, root: str, model, log=print) -> str:
  if cfg.diffs.base_workdir:
    return cfg.diffs.base_workdir
  workdir = os.path.join(root, 'base')
  summary = os.path.join(workdir, 'train_summary.json')
  if os.path.exists(summary) and json.load(open(summary))['steps'] == cfg.train.steps:
    return workdir
  train_data = data_lib.load_split(cfg, 'base_train', log)
  train_lib.train(cfg, workdir, model, train_data, log=log)
  return workdir


def _evaluate(evaluator, params, dataset, stats, cache: str, key: str, limit: int) -> dict:
  """{'wer', 'cer'} in %, read back from `cache` when this key was evaluated before."""
  results = json.load(open(cache)) if os.path.exists(cache) else {}
  if not isinstance(results.get(key), dict):
    os.makedirs(os.path.dirname(cache) or '.', exist_ok=True)
    out = evaluator({'params': params}, dataset, stats, limit=limit or len(dataset))
    results[key] = {'wer': 100 * out['wer'], 'cer': 100 * out['cer']}
    with open(cache + '.tmp', 'w') as f:
      json.dump(results, f)
    os.replace(cache + '.tmp', cache)
  return results[key]


def run(cfg, root: str, log=print) -> list[dict]:
  start = time.time()
  d = cfg.diffs
  model = models.build_model(cfg)
  base_dir = train_base(cfg, root, model, log)
  base_params = chain.to_numpy(train_lib.load_params(base_dir))
  stats_path = os.path.join(base_dir, 'feature_stats.json')
  stats = train_lib.feature_stats(None, cfg.frontend, base_dir)
  evaluator = evaluate_lib.Evaluator(model, cfg)
  quiet = lambda *_: None
  buckets = data_lib.buckets(cfg)
  domains = ['base'] + [f'update_{k}' for k in range(1, d.updates + 1)]
  tests = {name: data_lib.load_split(cfg, f'{name}_{d.eval_split}', quiet) for name in domains}
  sources = {name: data_lib.source(cfg, f'{name}_train', quiet) for name in domains}
  ucfg = update_config(cfg)
  full_bytes = package.full_model_bytes(base_params, d.value_dtype)
  limit = d.eval_utterances

  def key(domain):   # caches written before `eval_split` existed hold the test split's
    return domain if d.eval_split == 'test' else f'{domain}_{d.eval_split}'

  def scores(params, new, cache):
    new_domain = _evaluate(evaluator, params, tests[new], stats, cache, key(new), limit)
    base = _evaluate(evaluator, params, tests['base'], stats, cache, key('base'), limit)
    return {'wer_new': new_domain['wer'], 'cer_new': new_domain['cer'],
            'wer_base': base['wer'], 'cer_base': base['cer']}

  rows = [{'method': 'base model', 'budget': '-', 'update': 0, 'bytes': full_bytes,
           'pct_full': 100.0,
           **scores(base_params, 'update_1', os.path.join(root, 'base_eval.json'))}]
  log(f'base model: WER base {rows[0]["wer_base"]:.2f}%, update_1 (before) '
      f'{rows[0]["wer_new"]:.2f}%; full model package {full_bytes} bytes')
  chains, skipped = [], []        # every chain checked before the first one trains
  for method in d.methods.split(','):
    for fraction in [None] if method == 'full' else [float(b) for b in d.budgets.split(',')]:
      budget = (None if fraction is None else
                chain.budget_for(method, base_params, fraction, d.value_dtype, d.min_ndim))
      name = f'{method}@{fraction:g}' if fraction else method
      why = chain.infeasible(method, base_params, budget, d.min_ndim)
      if why:
        skipped.append(f'{name} ({why})')
        log(f'[{name}] skipped: {why}')
      else:
        chains.append((method, fraction, budget, name))
  for method, fraction, budget, name in chains:
    device = base_params
    for k in range(1, d.updates + 1):
      workdir = os.path.join(root, 'chains', name, f'update_{k}')
      new = f'update_{k}'
      earlier = [sources['base']] + [sources[f'update_{j}'] for j in range(1, k)]
      replay = chain.replay_sample(earlier, int(d.replay_fraction * len(sources[new])),
                                   cfg.seed + k)
      train_data = batching.Dataset(batching.Concat(sources[new], replay), buckets, name=new)
      log(f'[{name}] update {k}/{d.updates}: {len(train_data)} utterances '
          f'({len(replay)} replayed)')
      info = chain.run_update(ucfg, workdir, model, method, device, budget, train_data,
                              stats_path, k, log=quiet)
      device = info['params']
      cache = os.path.join(workdir, 'eval.json')
      row = {'method': method, 'budget': f'{100 * fraction:g}%' if fraction else 'all',
             'update': k, 'bytes': info['bytes'], 'pct_full': 100 * info['bytes'] / full_bytes,
             **scores(device, new, cache)}
      rows.append(row)
      log(f'[{name}] update {k}: {row["bytes"]} bytes ({row["pct_full"]:.2f}% of full), '
          f'WER {new} {row["wer_new"]:.2f}%, base {row["wer_base"]:.2f}%')
  write(rows, cfg, root, time.time() - start, skipped)
  return rows


def write(rows, cfg, root: str, wall_seconds: float, skipped=()):
  d = cfg.diffs
  notes = (f'Package bytes are the update files\' sizes ({d.value_dtype} values, zlib); "% of '
           f'full" compares them with the whole model serialised the same way. WER and CER on '
           f'each update\'s new-domain `{d.eval_split}` split ({_SPLIT_WORDS[d.eval_split]}) '
           f'and on the base domain\'s (forgetting), after applying the package on the device '
           f'side'
           + (f' (the first {d.eval_utterances} utterances of each)' if d.eval_utterances else '')
           + f'. Corpus '
           f'`{cfg.data.corpus}`, {d.updates} updates of {d.steps_per_update} steps, '
           f'replay {d.replay_fraction:g} per new example.'
           + (f' Skipped, {len(skipped)}: ' + '; '.join(skipped) + '.' if skipped else ''))
  columns = [('method', 'method'), ('budget', 'budget'), ('update', 'update'),
             ('bytes', 'package bytes'), ('pct_full', '% of full'),
             ('wer_new', 'WER new domain %'), ('cer_new', 'CER new domain %'),
             ('wer_base', 'WER base domain %'), ('cer_base', 'CER base domain %')]
  text = report.write_table(rows, columns, os.path.join(root, 'diffs_table'),
                            'Neural diffs: consecutive updates', notes, wall_seconds)
  series = {}
  for r in rows[1:]:
    key = f'{r["method"]} {r["budget"]}'
    xs, ys = series.setdefault(key, ([], []))
    xs.append(r['update'])
    ys.append(r['wer_new'])
  report.lines(series, 'update', 'WER % on the new domain',
               os.path.join(root, 'diffs_wer_by_update.png'), 'WER after each update')
  last = max(r['update'] for r in rows)
  by_method = {}
  for r in rows[1:]:
    if r['update'] == last:
      xs, ys = by_method.setdefault(r['method'], ([], []))
      xs.append(r['bytes'])
      ys.append(r['wer_new'])
  report.lines({m: (list(np.asarray(x)[np.argsort(x)]), list(np.asarray(y)[np.argsort(x)]))
                for m, (x, y) in by_method.items()}, 'package bytes (log)',
               f'WER % after update {last}', os.path.join(root, 'diffs_wer_vs_bytes.png'),
               'WER against update size', logx=True)
  print(text)
