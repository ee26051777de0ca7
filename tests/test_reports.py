"""The report commands end to end on the `tiny` corpus, as a researcher runs them: a two-row
AmNet sweep (a one-branch full model and an AmNet started from it) is trained and its table and
plots written by `launch.py --mode=report` (with each branch of the AmNet evaluated alone); and
`launch.py --mode=diffs` trains neural-diff chains and writes their table and plots."""
import csv
import json
import os
import shutil
import subprocess
import sys

import ml_collections
import pytest

from asr.data.voice_assistant import corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_engines = pytest.mark.skipif(not (shutil.which('flite') or shutil.which('espeak-ng')),
                                   reason='flite/espeak-ng not installed (tools/setup.sh)')

SWEEP = '''
SMALL = {{'data.corpus': 'tiny', 'model.encoder.layers': 1, 'model.encoder.units': 32,
          'model.pred_units': 16, 'model.joint_dim': 16, 'train.batch_size': 4,
          'train.steps': {steps}, 'train.warmup_steps': 1, 'train.checkpoint_every': 100,
          'eval.max_utterances': 4, 'data.cache_features': False,
          'data.bucket_seconds': (8.0,), 'data.batch_seconds': 0.0}}


def get_sweep(root):
  # Two streamed utterances, not 16: each length compiles a program per row.
  return dict(report='amnet', routing_row='amnet', ablation_rows=['amnet'], stream_utterances=2,
              points=[
      dict(name='full', config='experiments/configs/demo.py:full', overrides=SMALL),
      dict(name='amnet', config='experiments/configs/demo.py:amnet',
           overrides=dict(SMALL, **{{'model.encoder.init_from': '{{root}}/full',
                                    'model.encoder.routing.loss_variant': 'two_sided_upl'}})),
  ])
'''


# The diff chains' tests train a model of the tests' size, not configs/diffs.py's 2 x LSTM-160.
TINY_DIFFS = ('--config=experiments/configs/diffs.py:tiny', '--config.model.encoder.layers=1',
              '--config.model.encoder.units=32', '--config.model.pred_units=16',
              '--config.model.joint_dim=16', '--config.data.bucket_seconds=(4.0, 8.0)',
              '--config.train.steps=4', '--config.diffs.steps_per_update=2',
              '--config.diffs.warmup_steps=1', '--config.diffs.eval_utterances=3',
              '--config.train.batch_size=4', '--config.diffs.updates=1',
              '--config.data.cache_features=False')


def _launch(env, *flags):
  out = subprocess.run([sys.executable, 'launch.py', *flags], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  corpus.build('tiny', data_dir, workers=1)
  return dict(os.environ, ASR_DATA_DIR=data_dir, JAX_PLATFORMS='cpu')


@needs_engines
@pytest.mark.slow
def test_amnet_sweep_trains_and_report_writes_table_and_plots(env, tmp_path):
  sweep = tmp_path / 'sweep.py'
  sweep.write_text(SWEEP.format(steps=4))
  root = tmp_path / 'runs'
  _launch(env, f'--sweep={sweep}', f'--workdir={root}')
  _launch(env, '--mode=report', f'--sweep={sweep}', f'--workdir={root}')
  rows = list(csv.DictReader(open(root / 'amnet_table.csv')))
  assert [r['name'] for r in rows] == ['full', 'amnet']
  for r in rows:
    assert 0 <= float(r['wer']) and float(r['upl_p90_ms']) >= float(r['upl_median_ms']) > 0
  assert float(rows[0]['flops_vs_full']) == 100
  table = open(root / 'amnet_table.md').read()
  assert f'--sweep={sweep}' in table and '| amnet |' in table
  for plot in ('amnet_wer_vs_flops.png', 'amnet_routing.png'):
    assert (root / plot).stat().st_size > 1000
  alone = list(csv.DictReader(open(root / 'amnet_branch_ablation.csv')))
  assert [(r['name'], r['branch'].split()[0]) for r in alone] == [('amnet', 'slow'),
                                                                  ('amnet', 'fast')]
  assert all(r['routed_wer'] == rows[1]['wer'] and float(r['wer_alone']) >= 0 for r in alone)


@needs_engines
@pytest.mark.slow
def test_diffs_mode_runs_the_chains_and_writes_the_table(env, tmp_path):
  """`--mode=diffs`: base model, an update per chain, the table and both plots; a low-rank
  budget too small for rank 1 is a reported skip, not the end of the run. (Chains of several
  updates: tests/test_chain.py.)"""
  root = tmp_path / 'diffs'
  _launch(env, '--mode=diffs', *TINY_DIFFS, f'--workdir={root}',
          '--config.diffs.methods=lowrank,full', '--config.diffs.budgets=0.0005,0.1')
  rows = list(csv.DictReader(open(root / 'diffs_table.csv')))
  chains = [(r['method'], r['budget'], r['update']) for r in rows]
  assert chains == [('base model', '-', '0'), ('lowrank', '10%', '1'), ('full', 'all', '1')]
  for r in rows[1:]:     # the reported size is the package file's
    package_path = root / 'chains' / (r['method'] if r['method'] == 'full' else
                                      f'{r["method"]}@{float(r["budget"][:-1]) / 100:g}') / \
        f'update_{r["update"]}' / f'update_{r["update"]}.diff'
    assert int(r['bytes']) == package_path.stat().st_size
  assert float(rows[1]['pct_full']) <= 10 < 50 < float(rows[-1]['pct_full'])
  table = open(root / 'diffs_table.md').read()
  assert 'Skipped, 1: lowrank@0.0005 (low-rank budget' in table
  for plot in ('diffs_wer_by_update.png', 'diffs_wer_vs_bytes.png'):
    assert (root / plot).stat().st_size > 1000
  per_chain = list(csv.DictReader(open(root / 'diffs_summary.csv')))   # one line per chain
  assert [(c['method'], c['budget']) for c in per_chain] == [('lowrank', '10%'), ('full', 'all')]
  assert float(per_chain[0]['vs_full_last']) == pytest.approx(
      100 * (float(rows[1]['wer_new']) / float(rows[2]['wer_new']) - 1))
  # Settings are chosen on `test_seen`: the same chains, resumed, scored on those splits beside
  # (not over) the test figures.
  _launch(env, '--mode=diffs', *TINY_DIFFS, f'--workdir={root}', '--config.diffs.methods=full',
          '--config.diffs.eval_split=test_seen')
  cached = json.load(open(root / 'chains' / 'full' / 'update_1' / 'eval.json'))
  assert set(cached) == {'update_1', 'base', 'update_1_test_seen', 'base_test_seen'}
  assert 'new-domain `test_seen` split' in open(root / 'diffs_table.md').read()


def test_stream_times_come_in_groups_each_against_its_own_full_model(monkeypatch):
  """A timing process holds at most STREAM_GROUP models (a 29-row sweep overran the mappings
  one process may hold): every group times the full model too, and each row's ratio is to the
  full model of its own group."""
  from experiments import amnet_report
  calls = []

  def fake_measure(spec):
    calls.append([m['name'] for m in spec['models']])
    full_rtf = 0.01 * len(calls)            # the reference drifts from one process to the next
    return [{'rtf': full_rtf if m['name'] == 'full' else full_rtf * int(m['name'][1:]) / 10}
            for m in spec['models']]

  monkeypatch.setattr(amnet_report, 'STREAM_GROUP', 3)
  monkeypatch.setattr(amnet_report.stream_timing, 'measure', fake_measure)
  rows = [{'name': n} for n in ('r5', 'full', 'r2', 'r7', 'r4', 'r9')]
  details = {r['name']: {'cfg': ml_collections.ConfigDict({'x': 1})} for r in rows}
  sweep = {'points': [{'name': r['name'], 'workdir': f'w/{r["name"]}'} for r in rows]}
  amnet_report._stream_times(rows, rows[1], details, sweep)
  assert calls == [['full', 'r5', 'r2'], ['full', 'r7', 'r4'], ['full', 'r9']]
  assert rows[1]['stream_rtf'] == 0.01 and rows[1]['stream_time_vs_full'] == 1.0
  for r in rows:
    assert r['stream_time_vs_full'] == pytest.approx(int(r['name'][1:]) / 10 if r is not rows[1]
                                                     else 1.0)
  assert rows[5]['stream_rtf'] == pytest.approx(0.03 * 0.9)


def test_a_curves_sweep_report_picks_the_last_evaluation_before_each_mark(tmp_path):
  from experiments import modes  # pylint: disable=import-outside-toplevel
  rng = __import__('numpy').random.default_rng(0)
  runs = {}
  for name, n in (('a', 5), ('b', 3)):
    workdir = tmp_path / name
    workdir.mkdir()
    walls = sorted(rng.uniform(0, 600, n))
    evals = [{'kind': 'eval', 'step': 100 * (i + 1), 'wall_s': w,
              'base_test/wer': rng.random(), 'base_test/cer': rng.random(),
              'base_test_seen/wer': rng.random(), 'base_test_seen/cer': rng.random()}
             for i, w in enumerate(walls)]
    with open(workdir / 'metrics.jsonl', 'w') as f:
      f.write(json.dumps({'kind': 'train', 'step': 1, 'wall_s': 1.0, 'loss': 1.0}) + '\n')
      f.writelines(json.dumps(r) + '\n' for r in evals)
    runs[name] = evals
  sweep = {'report': 'curves', 'minutes': (2, 5, 10),
           'points': [{'name': n, 'workdir': str(tmp_path / n)} for n in runs]}
  modes.REPORTS['curves'](sweep, str(tmp_path))
  with open(tmp_path / 'curves.csv') as f:
    rows = list(csv.DictReader(f))
  want = []
  for name, evals in runs.items():            # brute force: scan the records for each mark
    for mark in ('2', '5', '10', 'end'):
      limit = float('inf') if mark == 'end' else 60 * float(mark)
      best = None
      for r in evals:
        if r['wall_s'] <= limit:
          best = r
      if best is not None:
        want.append((name, mark, best))
  assert [(r['run'], r['minutes']) for r in rows] == [(n, m) for n, m, _ in want]
  for row, (_, _, r) in zip(rows, want):
    assert float(row['base_test WER']) == pytest.approx(100 * r['base_test/wer'])
    assert float(row['CER ratio']) == pytest.approx(r['base_test/cer'] / r['base_test_seen/cer'])
    assert row['at'].endswith(f'step {r["step"]}')
  assert (tmp_path / 'curves.md').exists() and (tmp_path / 'curves.png').exists()


def test_voice_errors_pools_each_base_voice_with_its_variants():
  import importlib.util  # pylint: disable=import-outside-toplevel
  import jiwer  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location(
      'voice_errors', os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                   'tools', 'voice_errors.py'))
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  refs = ['turn on the light', 'set a timer', 'play some jazz', 'call mum', 'what time is it']
  hyps = ['turn on a light', 'set timer', 'play some jazz', 'cold mum', 'what time is']
  voices = ['flite/rms/00', 'flite/rms/03', 'festival/ked/00', 'flite/rms', 'festival/ked/01']
  rows = [{'id': f'u{i}', 'ref': r, 'hyp': h} for i, (r, h) in enumerate(zip(refs, hyps))]
  voice_of = {f'u{i}': v for i, v in enumerate(voices)}
  table = tool.voice_rows(rows, voice_of)
  assert [r['voice'] for r in table] == ['festival/ked', 'flite/rms', 'all']
  groups = {'festival/ked': [2, 4], 'flite/rms': [0, 1, 3], 'all': [0, 1, 2, 3, 4]}
  for row in table:
    members = groups[row['voice']]
    assert row['utterances'] == len(members)
    assert row['words'] == sum(len(refs[i].split()) for i in members)
    assert row['wer'] == pytest.approx(100 * jiwer.wer([refs[i] for i in members],
                                                       [hyps[i] for i in members]))
    assert row['cer'] == pytest.approx(100 * jiwer.cer([refs[i] for i in members],
                                                       [hyps[i] for i in members]))
  with pytest.raises(KeyError, match="'u0' has no voice"):
    tool.voice_rows(rows, {})
