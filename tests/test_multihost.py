"""Two processes on this machine joined by jax.distributed (2 fake CPU devices each), trained
through modes.train: a SIGTERM to one of them ends both at one agreed checkpoint; the resumed
run ends at the parameters of one process trained on the same global batches; process 0 alone
built the corpus and wrote the run's files. And a host's part of a batch is its rows of the
whole batch."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from asr import evaluate
from asr import metric_writer
from asr import train as train_lib
from asr.data import voice_assistant
from experiments import modes
from tests import helpers

SCRIPT = os.path.join(os.path.dirname(__file__), 'multihost_train_script.py')
STEPS = 8
TIMEOUT_S = 150


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _start(tmp_path, run: str, sleep: float):
  """Both processes of one run, their output in tmp_path/<run><i>.log (files, not pipes: no
  reader is needed to keep a process from blocking on a full pipe)."""
  port = _free_port()
  # The resumed run finds the first run's compiled programs in the persistent cache, the
  # many small ones of the eager model.init included.
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') +
                        ' --xla_force_host_platform_device_count=2'),
             JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'jax_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  procs = []
  for i in range(2):
    with open(tmp_path / f'{run}{i}.log', 'w') as out:
      procs.append(subprocess.Popen(
          [sys.executable, SCRIPT, str(i), str(port), str(tmp_path / 'work'),
           str(tmp_path / 'data'), str(STEPS), str(sleep), str(tmp_path / f'{run}{i}.json')],
          env=env, stdout=out, stderr=subprocess.STDOUT))
  return procs


def _log(tmp_path, run: str, i: int) -> str:
  return (tmp_path / f'{run}{i}.log').read_text()


def _wait_for_line(tmp_path, run, i, proc, prefix: str, deadline: float) -> bool:
  while time.time() < deadline and proc.poll() is None:
    if any(line.startswith(prefix) for line in _log(tmp_path, run, i).splitlines()):
      return True
    time.sleep(0.1)
  return False


def _finish(tmp_path, run, procs, deadline: float) -> list[int]:
  try:
    return [p.wait(timeout=max(deadline - time.time(), 1)) for p in procs]
  except subprocess.TimeoutExpired:
    raise AssertionError(f'{run}: still running after {TIMEOUT_S} s\n'
                         + '\n'.join(_log(tmp_path, run, i)[-3000:] for i in range(2))) from None


def _stop(procs):
  for p in procs:
    if p.poll() is None:
      p.kill()
      p.wait()


def _writes(tmp_path, run: str, i: int) -> list[str]:
  work = str(tmp_path / 'work') + os.sep
  with open(tmp_path / f'{run}{i}.json') as f:
    paths = json.load(f)
  return sorted({os.path.relpath(p, work) for p in paths
                 if p.startswith(work) and not p.startswith(work + 'checkpoints')})


@pytest.mark.slow
def test_sigterm_to_one_process_saves_one_step_and_resume_matches_one_process(
    tmp_path, monkeypatch):
  procs = []
  os.makedirs(tmp_path / 'data')
  try:
    deadline = time.time() + TIMEOUT_S
    procs = _start(tmp_path, 'cut', sleep=0.5)
    assert _wait_for_line(tmp_path, 'cut', 1, procs[1], 'step 3/', deadline), (
        _log(tmp_path, 'cut', 0) + _log(tmp_path, 'cut', 1))
    procs[1].send_signal(signal.SIGTERM)
    codes = _finish(tmp_path, 'cut', procs, deadline)
    logs = [_log(tmp_path, 'cut', i) for i in range(2)]
    assert codes == [143, 143], '\n'.join(logs)
    saved = [re.findall(r'SIGTERM \(process \[1\]\): saved step (\d+)', log) for log in logs]
    assert saved[0] == saved[1] and len(saved[0]) == 1, saved
    step = int(saved[0][0])
    assert 3 <= step < STEPS
    ckpt_dir = tmp_path / 'work' / 'checkpoints'
    assert max(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) == step

    deadline = time.time() + TIMEOUT_S
    procs = _start(tmp_path, 'resume', sleep=0)
    codes = _finish(tmp_path, 'resume', procs, deadline)
    logs = [_log(tmp_path, 'resume', i) for i in range(2)]
    assert codes == [0, 0], '\n'.join(logs)
    assert all(f'resumed from step {step} ' in log for log in logs)
  finally:
    _stop(procs)

  # Process 0 built the corpus once; the other waited for it, then loaded it.
  assert (tmp_path / 'data' / 'builds.log').read_text() == '0\n'
  # Process 0 alone wrote the run's files: each record once, one runs.jsonl line and one
  # TensorBoard file a start, and nothing opened for writing by process 1.
  work = tmp_path / 'work'
  steps = [r['step'] for r in metric_writer.read_metrics(str(work), 'train')]
  assert steps == list(range(1, STEPS + 1))
  assert len((work / 'runs.jsonl').read_text().splitlines()) == 2
  assert len(os.listdir(work / 'tensorboard')) == 2
  assert json.loads((work / 'train_summary.json').read_text())['steps'] == STEPS
  for name in ('config.json', 'feature_stats.json', 'learning_curve.png'):
    assert (work / name).exists(), name
  for run in ('cut', 'resume'):
    assert _writes(tmp_path, run, 1) == []
    assert {'metrics.jsonl', 'runs.jsonl', 'config.json'} <= set(_writes(tmp_path, run, 0))

  # One process, one device, the same global batches, no interruption.
  monkeypatch.setattr(voice_assistant, 'corpus', helpers.fake_corpus(build_seconds=0),
                      raising=False)
  monkeypatch.setitem(sys.modules, 'asr.data.voice_assistant.corpus', voice_assistant.corpus)
  monkeypatch.setattr(evaluate, 'Evaluator', helpers.stub_evaluator)
  os.makedirs(tmp_path / 'ref_data')
  cfg = helpers.tiny_config(**{'train.steps': STEPS, 'data.data_dir': str(tmp_path / 'ref_data')})
  modes.train(cfg, str(tmp_path / 'ref'), log=lambda *_: None)
  one = train_lib.load_params(str(tmp_path / 'ref'))
  two = train_lib.load_params(str(work))
  flat = lambda tree: dict(jax.tree_util.tree_flatten_with_path(tree)[0])
  one, two = flat(one), flat(two)
  assert one.keys() == two.keys() and one
  for key in one:
    np.testing.assert_allclose(one[key], two[key], atol=1e-5, err_msg=str(key))


def test_train_batch_parts_are_the_rows_of_the_full_batch():
  cfg = helpers.tiny_config()
  data = helpers.tiny_dataset(cfg, n=10)       # some batches end in padding rows
  sizes = (4, 4)
  padded = 0
  for step in range(data.batches_per_epoch(sizes)):
    full = data.train_batch(step, sizes, seed=3)
    padded += int((full['weights'] == 0).sum())
    for parts in (2, 4):
      pieces = [data.train_batch(step, sizes, seed=3, part=(i, parts)) for i in range(parts)]
      for key, value in full.items():
        np.testing.assert_array_equal(np.concatenate([p[key] for p in pieces]), value)
  assert padded
