"""A tiny RNN-T (2 x LSTM-128) on the `tiny` corpus: the smoke test of the whole pipeline.

  python launch.py --config=experiments/configs/tiny_rnnt.py --workdir=workdirs/tiny_rnnt

Expected: training loss falls from ~100+ to well below half within 300 steps; on `tiny` the
held-out-voice WER stays near 100% (too little data): RESULTS.md, "Amortized networks (demo)".
"""
from experiments.configs import common


def get_config():
  return common.base_config()
