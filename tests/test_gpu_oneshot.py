"""The Python pieces of tools/gpu_oneshot.sh: its configs, its sweep, its summary, the float16
export it returns. The script itself is checked by its CPU miniature (README, "Running on a
GPU"), minutes long: not part of the suite."""
import json

import numpy as np
import pytest

from asr import export
from asr import frontend
from experiments import oneshot
from experiments import sweep as sweep_lib
from experiments.configs import gpu


@pytest.mark.parametrize('size', ['', '@mini'])
def test_every_row_validates_and_fits_the_base_it_starts_from(size):
  base = sweep_lib.load_config(f'experiments/configs/gpu.py:base{size}')
  for row in gpu.ROWS:
    cfg = sweep_lib.load_config(f'experiments/configs/gpu.py:{row}{size}')
    # init_from and the diff chains load the base's parameters and feature stats: the same
    # layers, widths, frontend and heads in every row.
    for key in ('frontend', 'model.pred_units', 'model.joint_dim', 'model.ctc_upsample',
                'model.prune_range', 'model.encoder.layers', 'model.encoder.units',
                'data.corpus'):
      node_a, node_b = base, cfg
      for part in key.split('.'):
        node_a, node_b = node_a[part], node_b[part]
      assert node_a == node_b, (row, key)
  if size:
    assert base.data.corpus == 'tiny' and base.model.encoder.units <= 64
  else:
    # The article's size on the recipe of configs/base.py:levers.
    assert (base.model.encoder.layers, base.model.encoder.units) == (5, 640)
    assert (base.frontend.stack, base.frontend.vtlp_warp, base.model.ctc_weight) == (6, 0.1, 0.5)
    assert base.data.corpus == 'full' and base.model.prune_range == 5
    diffs = sweep_lib.load_config('experiments/configs/gpu.py:diffs')
    assert (diffs.diffs.methods, diffs.diffs.budgets, diffs.diffs.updates) == ('sparse,full',
                                                                              '0.1', 5)
    assert not diffs.diffs.binary_delta


def test_an_unknown_row_or_size_is_refused():
  with pytest.raises(ValueError, match='unknown row'):
    gpu.get_config('amnet_mf')
  with pytest.raises(ValueError, match='unknown row'):
    gpu.get_config('base@huge')


@pytest.mark.parametrize('path', ['experiments/sweeps/gpu.py', 'experiments/sweeps/gpu_mini.py'])
def test_the_sweep_names_the_rows_the_script_trains(path):
  sweep = sweep_lib.load_sweep(path, '/w/amnet')
  names = [p['name'] for p in sweep['points']]
  assert names == ['full', 'amnet_mf_2sided_upl', 'factorized', 'amnet_sparse']
  assert sweep['stream_utterances'] == 0 and sweep['routing_row'] in names
  for point in sweep['points'][1:]:
    assert point['overrides']['model.encoder.init_from'] == '/w/amnet/full'
    sweep_lib.load_config(point['config'], point['overrides'])


def test_summary_reads_what_a_cut_run_left(tmp_path):
  run = tmp_path / 'amnet' / 'factorized'
  run.mkdir(parents=True)
  records = [{'kind': 'train', 'step': 50, 'wall_s': 30.0, 'steps_per_s': 2.0, 'loss': 9.0},
             {'kind': 'train', 'step': 100, 'wall_s': 40.0, 'steps_per_s': 5.0,
              'audio_s_per_s': 900.0, 'loss': 7.5},
             {'kind': 'eval', 'step': 100, 'base_test/wer': 0.4567, 'base_test/cer': 0.2}]
  (run / 'metrics.jsonl').write_text('\n'.join(json.dumps(r) for r in records) + '\n{"kind": "tr')
  (run / 'config.json').write_text(json.dumps({'model': {'encoder': {'branches': 'main:x'}},
                                               'train': {'steps': 800}}))
  row = oneshot.run_row('factorized', str(run))
  assert (row['steps'], row['planned'], row['steps_per_s']) == (100, 800, 5.0)
  assert row['wer'] == {'base_test': pytest.approx(45.67)}
  assert row['status'].startswith('running or cut')
  (run / 'train_summary.json').write_text(json.dumps(
      {'steps': 100, 'stopped_early': 'train.deadline reached at step 100 of 800'}))
  meta = tmp_path / 'tfds' / 'voice_assistant' / 'full' / '2.0.0'
  meta.mkdir(parents=True)
  (meta / 'metadata.json').write_text(json.dumps(
      {'config': 'full', 'engines': {'flite': 'flite 2.2'}, 'engines_missing': ['piper'],
       'engine_source': 'packed folder engines only', 'hours': {'split': {'a': 1.5, 'b': 0.5}},
       'utterances': {'a': 10, 'b': 5}, 'text_sources': {}}))
  (tmp_path / 'results_rows').mkdir()
  (tmp_path / 'results_rows' / 'steps.txt').write_text('factorized: exit 0, 60 s (limit 100 s)\n')
  text = oneshot.summary(str(tmp_path), 'rows')
  assert "missing ['piper']" in text and '15 utterances, 2.00 h' in text
  assert '| factorized | main:x | 100 / 800 |' in text and '45.67 (base_test)' in text
  assert 'train.deadline reached' in text and 'factorized: exit 0, 60 s' in text


def test_half_copy_loads_back_as_float32_within_float16_precision(tmp_path):
  rng = np.random.default_rng(0)
  params = {'encoder': {'w': rng.normal(size=(8, 4)).astype(np.float32)},
            'step': np.arange(3, dtype=np.int32)}
  stats = {'mean': np.zeros(16, np.float32), 'std': np.ones(16, np.float32)}
  export.write(str(tmp_path / 'full'), params, '{}', stats, 'card')
  size = export.half_copy(str(tmp_path / 'full'), str(tmp_path / 'half'))
  assert size == (tmp_path / 'half' / export.PARAMS).stat().st_size
  loaded, loaded_stats = export.load(str(tmp_path / 'half'))
  assert loaded['encoder']['w'].dtype == np.float32 and loaded['step'].dtype == np.int32
  np.testing.assert_allclose(loaded['encoder']['w'], params['encoder']['w'], rtol=1e-3)
  np.testing.assert_array_equal(loaded['step'], params['step'])
  assert (tmp_path / 'half' / 'model_card.md').read_text() == 'card'
  np.testing.assert_array_equal(loaded_stats['std'], frontend.load_stats(
      str(tmp_path / 'full' / 'feature_stats.json'))[1])
