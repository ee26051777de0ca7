"""Training runs side by side at equal wall time: a table of each evaluated split's WER/CER at
minute marks, and all their curves in one plot (experiments.report.compare_runs).

  python tools/compare_runs.py OUT_STEM NAME=WORKDIR [NAME=WORKDIR ...] [--minutes=10,20,30]

RESULTS.md, "The base recognizer", has the base recipe against the earlier one.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import report  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(argv):
  minutes = [10.0, 20.0, 30.0, 40.0, 50.0]
  runs = {}
  for arg in argv[1:]:
    if arg.startswith('--minutes='):
      minutes = [float(m) for m in arg.split('=', 1)[1].split(',')]
    elif '=' in arg:
      name, workdir = arg.split('=', 1)
      runs[name] = workdir
    else:
      raise SystemExit(f'compare_runs: {arg!r} is not NAME=WORKDIR or --minutes=...')
  if not runs or len(argv) < 2 or '=' in argv[0]:
    raise SystemExit(__doc__)
  print(report.compare_runs(runs, minutes, argv[0]))


if __name__ == '__main__':
  main(sys.argv[1:])
