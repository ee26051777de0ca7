"""The benchmark command in a short mode: every figure is printed as JSON and in the table.

No thresholds on time (timings belong to benchmark runs, README "Performance")."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT = ['--config.bench.steps=2', '--config.bench.warmup=1', '--config.train.batch_size=2',
         '--config.data.bucket_seconds=(1.0,)', '--config.frontend.num_mels=16',
         '--config.model.encoder.layers=1', '--config.model.encoder.units=16',
         '--config.model.pred_units=16', '--config.model.joint_dim=16']


def _bench(tmp_path, *args):
  out = subprocess.run([sys.executable, 'launch.py', '--mode=bench', f'--workdir={tmp_path}',
                        *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert out.returncode == 0, out.stderr[-2000:]
  records = [json.loads(l) for l in out.stdout.splitlines() if l.startswith('{')]
  return records, out.stdout


@pytest.mark.slow
def test_amnet_bench_prints_every_figure(tmp_path):
  records, stdout = _bench(
      tmp_path, '--config=experiments/configs/amnet.py:amnet_mf',
      '--config.model.encoder.init_from=', '--config.bench.stream_utterances=1',
      '--config.bench.stream_seconds=1.0', '--config.bench.loss_shapes=((2,10,4,8),)',
      '--config.bench.loss_reps=1', *SHORT)
  figures = [(r['figure'], r.get('model', r.get('variant'))) for r in records]
  assert ('train_step', 'config') in figures and ('train_step', 'dense single branch') in figures
  assert ('loss', 'rnnt_loss') in figures and ('loss', 'rnnt_loss_lean') in figures
  assert [r['model'] for r in records if r['figure'] == 'streaming'] == [
      'branch slow:dense alone', 'branch fast:factorized:0.1 alone', 'AmNet (routed)']
  ratio = next(r for r in records if r['figure'] == 'ratio')
  steps = {r['model']: r['step_s'] for r in records if r['figure'] == 'train_step'}
  assert abs(ratio['value'] - steps['config'] / steps['dense single branch']) < 1e-9
  assert all(r['compile_s'] > 0 and r['step_s'] > 0 for r in records
             if r['figure'] == 'train_step')
  # XLA's per-step estimate is the model's own: the AmNet holds both branches and an arbitrator
  memory = {r['model']: r['step_memory_mb'] for r in records if r['figure'] == 'train_step'}
  assert memory['config'] > memory['dense single branch'] > 0
  assert '| ratio | AmNet train step / full train step |' in stdout


def test_reference_bench_times_jax_and_reports_the_torch_side(tmp_path):
  records, stdout = _bench(
      tmp_path, '--config=experiments/configs/bench_reference.py:lstm_ctc',
      '--config.bench.steps=2', '--config.bench.warmup=1',
      '--config.bench.reference_shape.layers=2', '--config.bench.reference_shape.units=16',
      '--config.bench.reference_shape.frames=12', '--config.bench.reference_shape.labels=3')
  ours, theirs = [r for r in records if r['figure'] == 'reference']
  assert ours['side'] == 'jax' and ours['step_s'] > 0 and ours['params'] > 0
  # torch is a benchmark-only extra: with it there is a ratio, without it a stated skip
  if 'skipped' in theirs:
    assert 'torch' in theirs['skipped'] and 'skipped:' in stdout
  else:
    ratio = next(r for r in records if r['figure'] == 'ratio')
    assert abs(ratio['value'] - ours['step_s'] / theirs['step_s']) < 1e-9
