"""Diff tables of several runs as one line per chain (diffs/summary.py), e.g. each budget's run
beside the one that trained full fine-tuning:

  python tools/diffs_summary.py OUT_STEM DIFFS_TABLE.csv [DIFFS_TABLE.csv ...]

Writes OUT_STEM.md and OUT_STEM.csv. RESULTS.md, "Neural diffs on the shipped base", has the
shipped base's chains at every budget.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from diffs import summary  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import report  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(argv):
  if len(argv) < 2 or argv[0].endswith('.csv'):
    raise SystemExit(__doc__)
  for path in argv[1:]:
    if not os.path.isfile(path):
      raise SystemExit(f'diffs_summary: {path}: no such file')
  try:
    rows = summary.merge({path: summary.read_rows(path) for path in argv[1:]})
  except ValueError as e:
    raise SystemExit(f'diffs_summary: {e}') from None
  lines = summary.chains(rows)
  print(report.write_table(lines, summary.columns(lines), argv[0],
                           'Neural diffs: one line per chain',
                           summary.NOTES + ' From: ' + ', '.join(f'`{p}`' for p in argv[1:]) +
                           '.'))


if __name__ == '__main__':
  main(sys.argv[1:])
