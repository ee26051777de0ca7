"""An exported model loads to exactly the trained checkpoint's variables, and refuses what it
cannot be."""
import json
import os

import jax
import numpy as np
import pytest

from asr import export
from asr import train as train_lib
from experiments import models
from experiments import modes
from tests import helpers


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp('export')
  cfg = helpers.tiny_config(**{'train.steps': 2})
  data = helpers.tiny_dataset(cfg)
  workdir = str(root / 'run')
  train_lib.train(cfg, workdir, models.build_model(cfg), data, log=lambda *_: None)
  return cfg, data, workdir, root


def test_export_round_trip_matches_the_checkpoint(trained):
  cfg, data, workdir, root = trained
  out = str(root / 'exported')
  modes.export(cfg, workdir, export_dir=out)
  assert sorted(os.listdir(out)) == sorted(export.FILES + ('model_card.md',))
  model = models.build_model(cfg)
  from_ckpt, stats_ckpt = train_lib.load_trained(cfg, workdir, model, data)
  from_export, stats_export = train_lib.load_trained(cfg, out, model, data)
  for a, b in zip(jax.tree_util.tree_leaves(from_ckpt), jax.tree_util.tree_leaves(from_export)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_allclose(stats_export['mean'], stats_ckpt['mean'], rtol=1e-6)
  # init_from reads an export like a workdir
  params = train_lib.load_params(out)
  assert set(params) == set(from_ckpt['params'])
  # the npz keys are the '/'-joined paths the update packages use
  with np.load(os.path.join(out, export.PARAMS)) as npz:
    assert 'encoder/branches/main/layer_0/wx/kernel' in npz.files
  card = open(os.path.join(out, 'model_card.md')).read()
  assert 'parameters' in card and 'corpus' in card


def test_export_refuses_a_foreign_alphabet_and_a_model_of_another_shape(trained, tmp_path):
  cfg, data, workdir, root = trained
  out = str(tmp_path / 'exported')
  modes.export(cfg, workdir, export_dir=out)
  wider = helpers.tiny_config(**{'model.encoder.units': 48})
  with pytest.raises(ValueError, match='do not fit'):
    train_lib.load_trained(wider, out, models.build_model(wider), data)
  with open(os.path.join(out, 'tokenizer.json'), 'w') as f:
    json.dump({'alphabet': 'abc', 'blank_id': 0}, f)
  with pytest.raises(ValueError, match='alphabet'):
    export.load(out)
  os.remove(os.path.join(out, 'config.json'))
  with pytest.raises(FileNotFoundError, match='missing config.json'):
    export.load(out)


def test_transcribe_reads_a_file_longer_than_every_bucket(trained, tmp_path, capsys):
  """A recording longer than the largest training bucket is decoded whole, exactly as a
  config whose buckets hold it decodes it (the encoder is unidirectional)."""
  import soundfile  # pylint: disable=g-import-not-at-top
  cfg, _, workdir, _ = trained
  examples = helpers.synthetic_examples(6, seed=3)
  audio = np.concatenate([e['audio'] for e in examples])        # several seconds
  assert audio.size / 16000 > cfg.data.bucket_seconds[-1]
  path = str(tmp_path / 'long.wav')
  soundfile.write(path, audio, 16000, subtype='PCM_16')
  modes.transcribe(cfg, workdir, audio=path)
  long_text = capsys.readouterr().out.strip().split('\t')[1:]
  roomy = helpers.tiny_config(**{'train.steps': 2, 'data.bucket_seconds': (1.0, 2.0, 30.0)})
  modes.transcribe(roomy, workdir, audio=path)
  roomy_text = capsys.readouterr().out.strip().split('\t')[1:]
  assert long_text == roomy_text and 'skipped' not in long_text
