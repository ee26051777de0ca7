"""Preemption: SIGKILL at random points + rerun = the uninterrupted run; SIGTERM saves first;
the same seed gives bitwise-identical parameters."""
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from asr import train as train_lib
from experiments import models
from tests import helpers

SCRIPT = os.path.join(os.path.dirname(__file__), 'tiny_train_script.py')
STEPS = '10'


def _start(workdir, out, sleep):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.Popen([sys.executable, SCRIPT, str(workdir), str(out), STEPS, str(sleep)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_step(proc, step: int):
  """Reads the run's progress lines until it reports `step` (or ends)."""
  for line in proc.stdout:
    if line.startswith(f'step {step}/'):
      return True
  return False


@pytest.mark.slow
def test_sigkill_at_three_points_then_resume_matches_uninterrupted(tmp_path):
  reference = _start(tmp_path / 'ref', tmp_path / 'ref.npz', 0)
  reference.communicate(timeout=300)
  assert reference.returncode == 0
  rng = np.random.default_rng(0)
  workdir = tmp_path / 'killed'
  for kill_step in sorted(rng.choice(np.arange(2, 9), 3, replace=False)):
    proc = _start(workdir, tmp_path / 'unused.npz', 0.3)
    _wait_for_step(proc, int(kill_step))
    proc.send_signal(signal.SIGKILL)      # no chance to clean up, mid-step or mid-save
    proc.wait()
  final = _start(workdir, tmp_path / 'killed.npz', 0)
  log, _ = final.communicate(timeout=300)
  assert final.returncode == 0, log
  assert 'resumed from step' in log
  a, b = np.load(tmp_path / 'ref.npz'), np.load(tmp_path / 'killed.npz')
  for key in a.files:
    np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)


def test_sigterm_saves_a_checkpoint_before_exiting(tmp_path):
  proc = _start(tmp_path / 'w', tmp_path / 'w.npz', 0.3)
  assert _wait_for_step(proc, 3)
  proc.send_signal(signal.SIGTERM)
  log, _ = proc.communicate(timeout=120)
  assert proc.returncode == 143, log
  step = int(log.split('SIGTERM: saved step ')[1].split()[0])
  assert step >= 3
  assert str(step) in os.listdir(tmp_path / 'w' / 'checkpoints')


def test_same_seed_gives_bitwise_identical_parameters(tmp_path):
  cfg = helpers.tiny_config(**{'train.steps': 3, 'frontend.spec_augment': True})
  data = helpers.tiny_dataset(cfg)
  runs = [train_lib.train(cfg, str(tmp_path / name), models.build_model(cfg), data,
                          log=lambda *_: None)[0] for name in ('a', 'b')]
  for x, y in zip(jax.tree_util.tree_leaves(runs[0]), jax.tree_util.tree_leaves(runs[1])):
    np.testing.assert_array_equal(x, y)
