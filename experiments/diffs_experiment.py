"""`launch.py --mode=diffs`: the base model, every method's chain of updates, and the table.

Layout under the workdir: `base/` (the base model), what `diffs.chain.run_chain` writes
(`base_eval.json`, `chains/<method>@<budget>/update_<k>/`), and `diffs_table.{md,csv}` with the
plots. Everything resumes: a finished base, update or evaluation is read back, not redone.
"""
import functools
import json
import os
import time

import numpy as np

from amortized import analysis
from asr import evaluate as evaluate_lib
from asr import train as train_lib
from diffs import chain
from diffs import summary
from experiments import data as data_lib
from experiments import models
from experiments import report


_SPLIT_WORDS = {'test': 'held-out voices',
                'test_seen': 'training voices, unseen sentences: the split for choosing settings'}


def train_base(cfg, root: str, model, log=print) -> str:
  if cfg.diffs.base_workdir:
    return cfg.diffs.base_workdir
  workdir = os.path.join(root, 'base')
  done = os.path.join(workdir, 'train_summary.json')
  if os.path.exists(done) and json.load(open(done))['steps'] == cfg.train.steps:
    return workdir
  train_data = data_lib.load_split(cfg, 'base_train', log, train=True)
  train_lib.train(cfg, workdir, model, train_data, log=log)
  return workdir


def run(cfg, root: str, log=print) -> list[dict]:
  start = time.time()
  dcfg = cfg.diffs
  model = models.build_model(cfg)
  routed = len(model.encoder.branches) > 1
  base_dir = train_base(cfg, root, model, log)
  quiet = lambda *_: None
  domains = chain.domains(dcfg.updates)
  tests = {name: data_lib.load_split(cfg, f'{name}_{dcfg.eval_split}', quiet) for name in domains}
  sources = {name: data_lib.source(cfg, f'{name}_train', quiet) for name in domains}
  rows, skipped = chain.run_chain(cfg, root, model=model, base_dir=base_dir, tests=tests,
                                  sources=sources, buckets=data_lib.buckets(cfg),
                                  evaluator=evaluate_lib.Evaluator(model, cfg),
                                  summarize=(functools.partial(analysis.routing_columns,
                                                               model.encoder)
                                             if routed else None), log=log)
  write(rows, cfg, root, time.time() - start, skipped)
  return rows


def write(rows, cfg, root: str, wall_seconds: float, skipped=()):
  dcfg = cfg.diffs
  if dcfg.get('binary_delta', True):
    from diffs import binary_delta  # pylint: disable=g-import-not-at-top
    generic = (f'"Binary delta" and "bsdiff4" are what a generic updater would ship for the '
               f'same applied model: the device\'s float32 params file, zstd level '
               f'{binary_delta.LEVEL} with the previous file as dictionary, or a bsdiff4 patch '
               f'(diffs/binary_delta.py); they rebuild it bit for bit, so their accuracy is the '
               f'row\'s.')
  else:
    generic = '"Binary delta" and "bsdiff4" not computed (`diffs.binary_delta` off).'
  notes = (f'Package bytes are the update files\' sizes ({dcfg.value_dtype} values, zlib); "% of '
           f'full" compares them with the whole model serialised the same way. {generic} '
           f'WER and CER on '
           f'each update\'s new-domain `{dcfg.eval_split}` split ({_SPLIT_WORDS[dcfg.eval_split]}) '
           f'and on the base domain\'s (forgetting), after applying the package on the device '
           f'side'
           + (f' (the first {dcfg.eval_utterances} utterances of each)'
              if dcfg.eval_utterances else '')
           + f'. Corpus '
           f'`{cfg.data.corpus}`, {dcfg.updates} updates of {dcfg.steps_per_update} steps, '
           f'replay {dcfg.replay_fraction:g} per new example.'
           + (f' Skipped, {len(skipped)}: ' + '; '.join(skipped) + '.' if skipped else ''))
  columns = [('method', 'method'), ('budget', 'budget'), ('lr', 'lr'), ('update', 'update'),
             ('bytes', 'package bytes'), ('pct_full', '% of full'),
             ('binary_delta_bytes', 'binary delta bytes'), ('bsdiff4_bytes', 'bsdiff4 bytes'),
             ('wer_new', 'WER new domain %'), ('cer_new', 'CER new domain %'),
             ('wer_base', 'WER base domain %'), ('cer_base', 'CER base domain %'),
             ('train_s', 'train s')]
  if any('shares' in r for r in rows):       # a routed model: where its frames went
    columns += [('shares', 'frames per branch (new domain)'),
                ('mflops_per_frame', 'MFLOP/frame'), ('confident_share', '% frames p>=0.99'),
                ('upl_median_ms', 'UPL p50 ms'), ('upl_p90_ms', 'UPL p90 ms')]
    notes += (' Routing columns: the new domain\'s split under the model\'s argmax routing, '
              'UPL on the simulated single-thread device.')
  text = report.write_table(rows, columns, os.path.join(root, 'diffs_table'),
                            'Neural diffs: consecutive updates', notes, wall_seconds)
  per_chain = summary.chains(rows)
  text += '\n' + report.write_table(
      per_chain, summary.columns(per_chain), os.path.join(root, 'diffs_summary'),
      'Neural diffs: one line per chain', summary.NOTES)
  choice = chain.choose_rates(rows)
  if choice:
    text += '\n' + report.write_table(
        choice, [('method', 'method'), ('budget', 'budget'), ('lr', 'lr'),
                 ('updates', 'updates'), ('mean_wer_new', 'mean WER new domain %'),
                 ('last_wer_base', 'WER base domain % after the last'), ('chosen', 'chosen')],
        os.path.join(root, f'lr_choice_{dcfg.eval_split}'),
        f'Learning rates on `{dcfg.eval_split}`',
        f'Each (method, budget) trained at several rates (`diffs.lrs` grid); chosen: the lowest '
        f'mean new-domain WER over the updates on `{dcfg.eval_split}` '
        f'({_SPLIT_WORDS[dcfg.eval_split]}).')
  grid = {(r['method'], r['budget']) for r in choice}
  series = {}
  for r in rows[1:]:
    key = f'{r["method"]} {r["budget"]}' + (f' lr {r["lr"]:g}'
                                            if (r['method'], r['budget']) in grid else '')
    xs, ys = series.setdefault(key, ([], []))
    xs.append(r['update'])
    ys.append(r['wer_new'])
  report.lines(series, 'update', 'WER % on the new domain',
               os.path.join(root, 'diffs_wer_by_update.png'), 'WER after each update')
  last = max(r['update'] for r in rows)
  by_method = {}
  for r in rows[1:]:
    if r['update'] == last:
      key = r['method'] + (f' lr {r["lr"]:g}' if (r['method'], r['budget']) in grid else '')
      xs, ys = by_method.setdefault(key, ([], []))
      xs.append(r['bytes'])
      ys.append(r['wer_new'])
      if r['method'] == 'full':   # the generic updater's bytes for the same model
        for key, name in (('binary_delta_bytes', 'full as binary delta'),
                          ('bsdiff4_bytes', 'full as bsdiff4')):
          if r.get(key) is not None:
            by_method[name] = ([r[key]], [r['wer_new']])
  report.lines({m: (list(np.asarray(x)[np.argsort(x)]), list(np.asarray(y)[np.argsort(x)]))
                for m, (x, y) in by_method.items()}, 'update bytes (log)',
               f'WER % after update {last}', os.path.join(root, 'diffs_wer_vs_bytes.png'),
               'WER against update size', logx=True)
  print(text)
