"""Trains the tiny test config on synthetic data in a fresh process (for device-count and
kill/resume tests): python tests/tiny_train_script.py WORKDIR OUT.npz [STEPS] [SLEEP_PER_STEP]."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from asr import train as train_lib
from experiments import models
from tests import helpers


def main(workdir, out, steps='6', sleep='0'):
  cfg = helpers.tiny_config(**{'train.steps': int(steps), 'train.checkpoint_every': 2})
  data = helpers.tiny_dataset(cfg)

  def log(line):
    print(line, flush=True)
    time.sleep(float(sleep))     # slows the loop so a test can kill it mid-run
  variables, _, _ = train_lib.train(cfg, workdir, models.build_model(cfg), data, log=log)
  flat = {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(variables)[0]}
  np.savez(out, devices=len(jax.devices()), **flat)


if __name__ == '__main__':
  main(*sys.argv[1:])
