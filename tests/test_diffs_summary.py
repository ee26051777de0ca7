"""diffs/summary.py and tools/diffs_summary.py: one line per chain, relative to full fine-tuning,
checked against the arithmetic done by hand on a small table."""
import csv
import os
import subprocess
import sys

import pytest

from diffs import summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLUMNS = ['method', 'budget', 'lr', 'update', 'bytes', 'pct_full', 'binary_delta_bytes',
           'bsdiff4_bytes', 'wer_new', 'cer_new', 'wer_base', 'cer_base', 'train_s']


def _row(method, budget, lr, update, nbytes, wer_new, wer_base, train_s=None):
  return dict(method=method, budget=budget, lr=lr, update=update, bytes=nbytes,
              pct_full=nbytes / 10, binary_delta_bytes=None, bsdiff4_bytes=None,
              wer_new=wer_new, cer_new=wer_new / 2, wer_base=wer_base, cer_base=wer_base / 2,
              train_s=train_s)


BASE = _row('base model', '-', None, 0, 1000, 80.0, 60.0)
SPARSE = [_row('sparse', '10%', 0.01, 1, 90, 70.0, 65.0, 150.0),
          _row('sparse', '10%', 0.01, 2, 94, 66.0, 70.0, 210.0)]
FULL = [_row('full', 'all', 0.01, 1, 1000, 60.0, 66.0, 200.0),
        _row('full', 'all', 0.01, 2, 1000, 50.0, 72.0)]     # a table from before train_s


def _write(path, rows):
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    for r in rows:
      writer.writerow(['' if r[k] is None else r[k] for k in COLUMNS])
  return str(path)


def test_a_chain_line_holds_its_updates_mean_and_gap_to_full_fine_tuning():
  lines = {c['method']: c for c in summary.chains([BASE] + SPARSE + FULL)}
  assert set(lines) == {'sparse', 'full'}            # the base row is no chain
  s = lines['sparse']
  assert (s['updates'], s['kB'], s['pct_full']) == (2, 0.092, 9.2)
  assert (s['wer_1'], s['wer_2'], s['base_last'], s['mean']) == (70.0, 66.0, 70.0, 68.0)
  assert s['train_min'] == 6.0                       # (150 + 210) s
  assert lines['full']['train_min'] is None          # one update's time unknown: no sum
  assert s['vs_full_last'] == pytest.approx(100 * (66 / 50 - 1))     # 32%
  assert s['vs_full_mean'] == pytest.approx(100 * (68 / 55 - 1))
  assert 'vs_full_last' not in lines['full']
  headers = [h for _, h in summary.columns(list(lines.values()))]
  assert 'WER new, update 2' in headers and 'WER new, update 3' not in headers


def test_no_gap_is_given_without_exactly_one_full_chain():
  other_full = [dict(r, lr=0.003, wer_new=r['wer_new'] + 1) for r in FULL]
  for rows in (SPARSE, SPARSE + FULL + other_full):
    assert not any('vs_full_last' in c for c in summary.chains(rows))


def test_tables_merge_and_a_chain_two_tables_disagree_on_is_named(tmp_path):
  a = _write(tmp_path / 'a.csv', [BASE] + SPARSE + FULL)
  b = _write(tmp_path / 'b.csv', [BASE] + FULL + [dict(r, budget='2%') for r in SPARSE])
  merged = summary.merge({p: summary.read_rows(p) for p in (a, b)})
  assert [(c['method'], c['budget']) for c in summary.chains(merged)] == [
      ('sparse', '10%'), ('full', 'all'), ('sparse', '2%')]      # full read back once
  c = _write(tmp_path / 'c.csv', [BASE] + [dict(FULL[0], wer_new=61.0)])
  with pytest.raises(ValueError, match=r'full all lr 0.01 update 1: .*a\.csv.* .*c\.csv'):
    summary.merge({p: summary.read_rows(p) for p in (a, c)})


def test_the_tool_writes_the_summary_and_names_a_bad_cell(tmp_path):
  a = _write(tmp_path / 'a.csv', [BASE] + SPARSE + FULL)
  out = subprocess.run([sys.executable, 'tools/diffs_summary.py', str(tmp_path / 'sum'), a],
                       cwd=ROOT, capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr
  rows = list(csv.DictReader(open(tmp_path / 'sum.csv')))
  assert [r['method'] for r in rows] == ['sparse', 'full']
  assert float(rows[0]['vs_full_last']) == pytest.approx(32.0)
  bad = _write(tmp_path / 'bad.csv', [BASE, dict(SPARSE[0], wer_new='sixty')])
  out = subprocess.run([sys.executable, 'tools/diffs_summary.py', str(tmp_path / 'sum'), bad],
                       cwd=ROOT, capture_output=True, text=True, check=False)
  assert out.returncode != 0
  assert out.stderr.strip() == f"diffs_summary: {bad}:3: wer_new 'sixty' is not a number"
