"""The one train loop: loss falls, resume continues, compilations = buckets, NaN handling."""
import json
import shutil

import jax
import numpy as np
import pytest

from asr import evaluate
from asr import train as train_lib
from experiments import models
from tests import helpers


def _run(cfg, workdir, data, **kwargs):
  model = models.build_model(cfg)
  return train_lib.train(cfg, str(workdir), model, data, log=lambda *_: None, **kwargs)


def test_loss_falls_and_eval_runs(tmp_path):
  # With the base recipe's levers: the pruned joint, 60 ms frames with two CTC outputs each,
  # and vocal-tract-length perturbation.
  cfg = helpers.tiny_config(**{'train.steps': 40, 'train.checkpoint_every': 100,
                               'model.prune_range': 3, 'frontend.stack': 6, 'frontend.stride': 6,
                               'model.ctc_upsample': 2, 'frontend.vtlp_warp': 0.1})
  data = helpers.tiny_dataset(cfg, 8)
  model = models.build_model(cfg)
  evaluator = evaluate.Evaluator(model, cfg)
  variables, stats, history = train_lib.train(cfg, str(tmp_path), model, data, data,
                                              evaluate_fn=evaluator, log=lambda *_: None)
  rows = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  losses = [r['loss'] for r in rows if r['kind'] == 'train']
  assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
  assert all(np.isfinite(r['simple_loss']) for r in rows if r['kind'] == 'train')
  # The same scalars in TensorBoard's event files.
  scalars = helpers.read_tensorboard_scalars(str(tmp_path / 'tensorboard'))
  train_rows = [r for r in rows if r['kind'] == 'train']
  np.testing.assert_allclose([v for _, v in scalars['train/loss']],
                             [r['loss'] for r in train_rows], rtol=1e-6)
  assert [s for s, _ in scalars['train/lr']] == [r['step'] for r in train_rows]
  assert scalars['train/lr'][-1][1] < scalars['train/lr'][len(train_rows) // 2][1]  # decays
  assert {'eval/wer', 'eval/cer', 'train/steps_per_s', 'train/audio_s_per_s'} <= set(scalars)
  assert 0.0 <= history['eval']['wer'] <= 2.0
  assert 0.0 <= history['eval']['emission_position'] <= 1.0
  summary = json.load(open(tmp_path / 'train_summary.json'))
  # jit compiles once per length bucket, never per batch or per epoch
  assert summary['compilations'] == summary['buckets_used'] <= len(cfg.data.bucket_seconds)


def test_resume_continues_from_checkpoint_and_matches(tmp_path):
  # with the log-mel cache: the resumed run must read the same batches from it
  cfg = helpers.tiny_config(**{'train.steps': 6, 'train.checkpoint_every': 2,
                               'data.cache_features': True})
  data = helpers.tiny_dataset(cfg)
  full, _, _ = _run(cfg, tmp_path / 'full', data)
  # A run killed after its step-4 checkpoint: same workdir without the later checkpoint.
  _run(cfg, tmp_path / 'resumed', data)
  shutil.rmtree(tmp_path / 'resumed' / 'checkpoints' / '6')
  logs = []
  resumed, _, _ = train_lib.train(cfg, str(tmp_path / 'resumed'), models.build_model(cfg), data,
                                  log=logs.append)
  assert any('resumed from step 4' in l for l in logs)
  steps = [json.loads(l)['step'] for l in open(tmp_path / 'resumed' / 'metrics.jsonl')]
  assert steps[-2:] == [5, 6] and len(steps) == 8     # 1..6, then 5, 6 again after the resume
  for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(resumed)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_deadline_ends_the_run_as_its_last_step_would(tmp_path):
  # train.deadline (tools/gpu_oneshot.sh): the step that crosses it is the last, with a
  # checkpoint, the evaluation and the summary that say so.
  cfg = helpers.tiny_config(**{'train.steps': 1000, 'train.deadline': 1.0})
  data = helpers.tiny_dataset(cfg)
  model = models.build_model(cfg)
  _, _, history = train_lib.train(cfg, str(tmp_path), model, data, data,
                                  evaluate_fn=evaluate.Evaluator(model, cfg), log=lambda *_: None)
  summary = json.load(open(tmp_path / 'train_summary.json'))
  assert summary['steps'] == 1 and 'deadline' in summary['stopped_early']
  assert history['eval'] and history['train']['step'] == 1
  assert (tmp_path / 'checkpoints' / '1').is_dir()


@pytest.mark.parametrize('policy', ['skip', 'stop'])
def test_nonfinite_step_is_skipped_or_stops(tmp_path, monkeypatch, policy):
  cfg = helpers.tiny_config(**{'train.steps': 3, 'train.nan_policy': policy})
  data = helpers.tiny_dataset(cfg)
  real = train_lib.features.featurize_batch
  poisoned = lambda *a, **k: (lambda f, p: (f * float('nan'), p))(*real(*a, **k))
  monkeypatch.setattr(train_lib.features, 'featurize_batch', poisoned)
  if policy == 'stop':
    with pytest.raises(train_lib.NonFiniteError, match='step 0; last good checkpoint: step None'):
      _run(cfg, tmp_path, data)
    return
  initial = train_lib.init_variables(models.build_model(cfg), cfg, data, cfg.seed)
  variables, _, history = _run(cfg, tmp_path, data)
  assert history['train']['skipped_nonfinite'] == 3
  for a, b in zip(jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(initial)):
    np.testing.assert_array_equal(a, b)     # no update was applied


@pytest.mark.parametrize('round_steps', [0, 3])
def test_rounds_start_every_round_steps_or_every_epoch(tmp_path, round_steps):
  cfg = helpers.tiny_config(**{'train.steps': 8, 'train.checkpoint_every': 100})
  data = helpers.tiny_dataset(cfg, 8)
  per_round = round_steps or data.batches_per_epoch(cfg.train.batch_size)
  plain = train_lib.plain_parametrization()
  calls = []

  def on_round(r, trainable, fixed):
    calls.append(r)
    return trainable, fixed

  param = train_lib.Parametrization(plain.init, plain.apply, on_round, round_steps)
  _run(cfg, tmp_path, data, parametrization=param)
  assert calls == list(range(-(-8 // per_round)))       # rounds 0, 1, ... started before step 8


def test_frozen_parts_keep_their_initial_values(tmp_path):
  cfg = helpers.tiny_config(**{'train.steps': 3, 'train.frozen': 'predictor,joint'})
  data = helpers.tiny_dataset(cfg)
  model = models.build_model(cfg)
  init = train_lib.init_variables(model, cfg, data, cfg.seed)
  trained, _, _ = _run(cfg, tmp_path, data, init_vars=init)
  # The train step donated `init`'s buffers; the same seed gives the same values again.
  init = jax.tree_util.tree_map(np.asarray, train_lib.init_variables(model, cfg, data, cfg.seed))
  for part in ('predictor', 'joint'):
    for a, b in zip(jax.tree_util.tree_leaves(init['params'][part]),
                    jax.tree_util.tree_leaves(trained['params'][part])):
      np.testing.assert_array_equal(a, b)
  moved = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(
      jax.tree_util.tree_leaves(init['params']['encoder']),
      jax.tree_util.tree_leaves(trained['params']['encoder']))]
  assert min(moved) > 0


def test_frozen_path_freezes_only_that_subtree():
  params = {'encoder': {'branches': {'slow': {'w': np.ones(2)}, 'fast': {'w': np.ones(2)}}},
            'joint': {'w': np.ones(2)}}
  mask = train_lib._frozen_mask(['encoder/branches/slow', 'joint'], params)
  assert mask == {'encoder': {'branches': {'slow': {'w': True}, 'fast': {'w': False}}},
                  'joint': {'w': True}}
  with pytest.raises(ValueError, match='encoder/branches/medium'):
    train_lib._frozen_mask(['encoder/branches/medium'], params)
  with pytest.raises(ValueError, match='freezes every parameter'):
    train_lib._frozen_mask(['encoder/branches/slow', 'encoder/branches/fast', 'joint'], params)


def test_frozen_names_an_unknown_part():
  cfg = helpers.tiny_config(**{'train.steps': 1, 'train.frozen': 'decoder'})
  with pytest.raises(ValueError, match="train.frozen: \\['decoder'\\]"):
    train_lib.make_optimizer(cfg.train).init({'encoder': np.zeros(2), 'joint': np.zeros(2)})
