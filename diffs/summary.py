"""One line per chain of a diff table: its bytes, new-domain WER after every update, the mean,
and both relative to full fine-tuning; from the rows `diffs.chain.run_chain` returns, or from
`diffs_table.csv` files of several runs (tools/diffs_summary.py).

Relative figures divide by the table's one full fine-tuning chain: (WER - full's) / full's,
after the last update and over the mean of all updates. With no full chain, or several (a rate
grid), they are left out rather than guessed.
"""
import csv

import numpy as np

NOTES = ('Package kB and % of full: means over the updates. WER new: on the update\'s own domain '
         'after it; mean WER new: over the updates. "vs full": relative to the table\'s full '
         'fine-tuning chain, (WER / full\'s WER - 1) x 100, after the last update and over the '
         'means. Train min: the updates\' training wall time summed, compilation included, '
         'export and evaluation not.')

_NUMERIC = ('update', 'bytes', 'pct_full', 'binary_delta_bytes', 'bsdiff4_bytes', 'wer_new',
            'cer_new', 'wer_base', 'cer_base', 'lr', 'train_s')


def read_rows(path: str) -> list[dict]:
  """The rows of a `diffs_table.csv`, numbers as numbers (empty cells as None)."""
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    missing = {'method', 'budget', 'update', 'bytes', 'wer_new', 'wer_base'} - set(
        reader.fieldnames or ())
    if missing:
      raise ValueError(f'{path}: not a diff table, no column {sorted(missing)}')
    rows = []
    for line, raw in enumerate(reader, 2):
      row = dict(raw)
      for key in _NUMERIC:
        if row.get(key) not in (None, ''):
          try:
            row[key] = float(row[key])
          except ValueError:
            raise ValueError(f'{path}:{line}: {key} {row[key]!r} is not a number') from None
        elif key in row:
          row[key] = None
      row['update'] = int(row['update'])
      rows.append(row)
  return rows


def merge(tables: dict[str, list[dict]]) -> list[dict]:
  """Rows of several tables (name -> rows) as one: a chain (method, budget, lr) that two tables
  both hold must have the same figures in both (a chain read back by a later run), else it is
  ambiguous which to report and this raises, naming both."""
  seen, out = {}, []
  for name, rows in tables.items():
    for row in rows:
      key = (row['method'], row['budget'], row.get('lr'), row['update'])
      figures = (row['bytes'], row['wer_new'], row['wer_base'])
      if key in seen:
        other, other_figures = seen[key]
        if other_figures != figures:
          raise ValueError(f'{row["method"]} {row["budget"]} lr {row.get("lr")} update '
                           f'{row["update"]}: {other} has {other_figures}, {name} has {figures}')
        continue
      seen[key] = (name, figures)
      out.append(row)
  return out


def chains(rows: list[dict]) -> list[dict]:
  """One dict per chain in first-seen order: method, budget, lr, updates, kB (mean package
  bytes / 1000), pct_full (mean), train_min (the updates' training minutes, summed), wer_<k>
  per update, base_last (base-domain WER after the
  last), mean (new-domain WER over the updates), and vs_full_last / vs_full_mean (relative, %)
  where the rows hold exactly one full fine-tuning chain and the line has as many updates."""
  groups = {}
  for r in rows:
    if r['update'] > 0:
      groups.setdefault((r['method'], r['budget'], r.get('lr')), []).append(r)
  out = []
  for (method, budget, lr), updates in groups.items():
    updates = sorted(updates, key=lambda u: u['update'])
    nbytes = _mean(updates, 'bytes')
    line = {'method': method, 'budget': budget, 'lr': lr, 'updates': len(updates),
            'kB': None if nbytes is None else nbytes / 1000,
            'pct_full': _mean(updates, 'pct_full')}
    seconds = [u.get('train_s') for u in updates]
    line['train_min'] = None if None in seconds else sum(seconds) / 60
    for u in updates:
      line[f'wer_{u["update"]}'] = u['wer_new']
    line['base_last'] = updates[-1]['wer_base']
    line['mean'] = float(np.mean([u['wer_new'] for u in updates]))
    out.append(line)
  full = [c for c in out if c['method'] == 'full']
  if len(full) == 1:
    ref = full[0]
    for c in out:
      if c is ref or c['updates'] != ref['updates']:
        continue
      last, mean = ref[f'wer_{ref["updates"]}'], ref['mean']
      if last > 0:               # a perfect full fine-tuning leaves no ratio to state
        c['vs_full_last'] = 100 * (c[f'wer_{c["updates"]}'] / last - 1)
      if mean > 0:
        c['vs_full_mean'] = 100 * (c['mean'] / mean - 1)
  return out


def _mean(updates: list[dict], key: str) -> float | None:
  """The mean of a figure over the updates; None where an update lacks it."""
  values = [u.get(key) for u in updates]
  return None if any(v is None for v in values) else float(np.mean(values))


def columns(lines: list[dict]) -> list[tuple[str, str]]:
  """(key, header) for report.write_table, one WER column per update the lines reach."""
  most = max((c['updates'] for c in lines), default=0)
  return ([('method', 'method'), ('budget', 'budget'), ('lr', 'lr'), ('kB', 'package kB'),
           ('pct_full', '% of full')]
          + [(f'wer_{k}', f'WER new, update {k}') for k in range(1, most + 1)]
          + [('mean', 'mean WER new'), ('base_last', 'WER base after the last'),
             ('vs_full_last', 'last vs full %'), ('vs_full_mean', 'mean vs full %'),
             ('train_min', 'train min')])
