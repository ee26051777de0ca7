"""Transcription as a user runs it: word times, output files, streaming = offline, the config
read from the workdir, and the beam search compiled once for every batch of a bucket."""
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

from asr import evaluate as evaluate_lib
from asr import features
from asr import rnnt
from asr import text as text_lib
from asr import train as train_lib
from asr import transcribe
from experiments import models
from experiments import modes
from experiments import transcription
from experiments.configs import from_workdir
from tests import helpers

TOK = text_lib.CharTokenizer()


# --- word times --------------------------------------------------------------------------------

def test_word_times_from_a_hand_made_emission_sequence():
  # ' go  up' emitted at these encoder frames; 30 ms frames.
  ids = TOK.encode(' go  up')
  frames = [1, 3, 4, 4, 6, 7, 9]
  text, words = transcribe.words_with_times(ids, frames, 0.03)
  assert text == ' go  up'
  # go: first char at frame 3 -> 0.09 s, last at frame 4 -> ends with it at 0.15 s;
  # up: frames 7 and 9 -> 0.21 .. 0.30 s.
  assert words == [{'word': 'go', 'start_s': 0.09, 'end_s': 0.15},
                   {'word': 'up', 'start_s': 0.21, 'end_s': 0.30}]
  cfg = helpers.tiny_config(**{'frontend.stride': 6, 'frontend.stack': 6})
  assert features.frame_seconds(cfg.frontend) == pytest.approx(0.06)   # the unit of frames
  with pytest.raises(transcribe.TranscribeError, match='2 labels but 1 emission frames'):
    transcribe.words_with_times([3, 4], [0], 0.03)


def _table_decoder():
  """Logits depend on (frame, last label) only: labels 1, 2; blank 0. Frame 0: blank. Frame 1:
  1, then blank. Frame 2: 2, then 1, then the cap of 2. Frame 3: blank."""
  table = np.zeros((4, 3, 3), np.float32)
  table[0, :, 0] = 5
  table[1, 0, 1] = 5
  table[1, 1, 0] = 5
  table[2, 1, 2] = 5
  table[2, 2, 1] = 5
  table[3, :, 0] = 5
  table = jnp.asarray(table)
  pred_step = lambda last, label: (jax.nn.one_hot(label, 3), label)
  joint = lambda enc_frame, pred_out: jnp.einsum('bt,bl,tlv->bv', enc_frame, pred_out, table)
  return pred_step, joint, np.eye(4, dtype=np.float32)


def test_the_decoders_report_the_frame_of_each_label():
  pred_step, joint, enc = _table_decoder()
  tokens, pads, frames = rnnt.greedy_decode(
      enc[None], np.zeros((1, 4), np.float32), jnp.zeros((1,), jnp.int32), pred_step, joint,
      max_symbols_per_frame=2, return_frames=True)
  valid = np.asarray(pads[0]) < 0.5
  assert np.asarray(tokens[0])[valid].tolist() == [1, 2, 1]
  assert np.asarray(frames[0])[valid].tolist() == [1, 2, 2]
  labels, _, beam_frames = rnnt.beam_search(enc, jnp.zeros((1,), jnp.int32), pred_step, joint,
                                            beam_width=2, max_symbols_per_frame=2,
                                            return_frames=True)
  assert labels == [1, 2, 1] and beam_frames == [1, 2, 2]


# --- output files and audio streams ------------------------------------------------------------

def test_outputs_are_chosen_by_extension_and_written_whole(tmp_path):
  words = [{'word': 'go', 'start_s': 0.09, 'end_s': 0.15}]
  for name in ('out.tsv', 'out.jsonl'):
    path = str(tmp_path / name)
    out = transcribe.Output(path)
    out.add('a.wav', 'go', words, 1.5)
    assert not os.path.exists(path)           # nothing half-written while it runs
    out.close()
    lines = open(path).read().splitlines()
    if name.endswith('.tsv'):
      assert lines == [transcribe.TSV_HEADER, 'a.wav\t0.000\t1.500\tgo\tgo:0.090-0.150']
    else:
      assert [json.loads(l) for l in lines] == [
          {'path': 'a.wav', 'text': 'go', 'words': words, 'duration_s': 1.5}]
  assert transcribe.output_format(str(tmp_path / 'x.txt'), 'jsonl') == 'jsonl'
  with pytest.raises(transcribe.TranscribeError, match=r"x\.txt.*'\.txt'"):
    transcribe.Output(str(tmp_path / 'x.txt'))


def test_stdin_reads_raw_pcm_and_16k_mono_wav_and_refuses_other_wavs():
  rng = np.random.default_rng(0)
  pcm = (rng.standard_normal(5001) * 3000).astype(np.int16)
  wav = io.BytesIO()
  soundfile.write(wav, pcm, 16000, format='WAV', subtype='PCM_16')
  for data in (pcm.tobytes(), wav.getvalue()):
    chunks = list(transcribe.read_pcm_stream(io.BytesIO(data), 1000))
    assert [c.size for c in chunks] == [1000] * 5 + [1]
    np.testing.assert_array_equal(np.concatenate(chunks), pcm)
  other = io.BytesIO()
  soundfile.write(other, pcm, 8000, format='WAV', subtype='PCM_16')
  with pytest.raises(transcribe.TranscribeError, match='stdin: WAV stream is .* 8000 Hz'):
    list(transcribe.read_pcm_stream(io.BytesIO(other.getvalue()), 1000))


def test_played_in_real_time_a_chunk_comes_once_its_audio_has_passed():
  now = [0.0]
  sleeps = []
  def sleep(s):
    sleeps.append(s)
    now[0] += s
  chunks = list(transcribe.play_file(np.zeros(4000, np.int16), 1600, True,
                                     clock=lambda: now[0], sleep=sleep))
  assert [c.size for c in chunks] == [1600, 1600, 800]
  assert sleeps == pytest.approx([0.1, 0.1, 0.05])


def test_progress_bars_stay_off_the_terminal_when_stderr_is_not_one():
  assert transcribe.progress(total=3, enabled=True).disable      # pytest captures stderr
  assert transcribe.progress(total=3, enabled=False).disable


@pytest.mark.parametrize('causal_cmn,stack,stride', [(False, 3, 3), (True, 3, 3), (True, 5, 3)])
def test_stream_featurizer_gives_the_offline_features_whatever_the_chunks(causal_cmn, stack,
                                                                          stride):
  cfg = helpers.tiny_config()
  cfg.frontend.causal_cmn, cfg.frontend.stack, cfg.frontend.stride = causal_cmn, stack, stride
  cfg.frontend.cmn_prior_frames = 10.0
  rng = np.random.default_rng(1)
  audio = (rng.standard_normal(16000) * 3000).astype(np.int16)
  stats = {'mean': rng.standard_normal(16).astype(np.float32) - 3.0,    # an offset for CMN
           'std': (1 + rng.random(16)).astype(np.float32)}
  whole, pads = features.featurize(audio[None], np.zeros((1, audio.size), np.float32),
                                   cfg.frontend, stats)
  whole = np.asarray(whole[0])[np.asarray(pads[0]) < 0.5]
  featurizer = transcribe.StreamFeaturizer(cfg.frontend, stats, block_frames=4)
  blocks, begin = [], 0
  for size in (100, 3000, 7, 5000, 7893):                    # 16000 samples in odd pieces
    blocks += featurizer.push(audio[begin:begin + size])
    begin += size
  blocks += featurizer.flush()
  assert [first for _, _, first in blocks] == list(range(0, whole.shape[0], 4))
  streamed = np.concatenate([np.asarray(f[0])[p[0] < 0.5] for f, p, _ in blocks])
  np.testing.assert_allclose(streamed, whole, atol=2e-4)
  assert streamed.shape == whole.shape


# --- configs from the workdir ------------------------------------------------------------------

def test_the_config_comes_from_the_workdir_defaults_filled_unknown_keys_refused(tmp_path):
  with pytest.raises(from_workdir.WorkdirConfigError, match=f'{tmp_path}/config.json: no such'):
    from_workdir.load(str(tmp_path))
  cfg = helpers.tiny_config()
  saved = json.loads(cfg.to_json_best_effort())
  del saved['model']['prune_range']               # written before the key existed
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  loaded = from_workdir.load(str(tmp_path))
  assert loaded.model.prune_range == 0 and loaded.data.bucket_seconds == (1.0, 2.0)
  assert loaded.to_dict() == cfg.to_dict()
  saved['model']['wings'] = 2
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  with pytest.raises(from_workdir.WorkdirConfigError, match="key 'model.wings'"):
    from_workdir.load(str(tmp_path))
  saved['model'].pop('wings')
  saved['eval']['beam_width'] = 'wide'
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  with pytest.raises(from_workdir.WorkdirConfigError, match="eval.beam_width is 'wide'"):
    from_workdir.load(str(tmp_path))


# --- a tiny trained model, end to end ----------------------------------------------------------

@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """A tiny model trained 2 steps and exported: a folder with its own config.json."""
  root = tmp_path_factory.mktemp('transcribe')
  cfg = helpers.tiny_config(**{'train.steps': 2})
  workdir = str(root / 'run')
  train_lib.train(cfg, workdir, models.build_model(cfg), helpers.tiny_dataset(cfg),
                  log=lambda *_: None)
  out = str(root / 'export')
  modes.export(cfg, workdir, export_dir=out)
  audio = np.concatenate([e['audio'] for e in helpers.synthetic_examples(3, seed=5)])
  folder = root / 'audio'
  folder.mkdir()
  soundfile.write(str(folder / 'a.wav'), audio, 16000, subtype='PCM_16')
  soundfile.write(str(folder / 'b.wav'), audio[:9000], 16000, subtype='PCM_16')
  return from_workdir.load(out), out, str(folder)


def test_transcribe_writes_word_times_and_streaming_gives_the_offline_text(exported, tmp_path,
                                                                          capsys):
  cfg, model_dir, folder = exported
  out = str(tmp_path / 'out.jsonl')
  modes.transcribe(cfg, model_dir, audio=folder, output=out)
  offline = [json.loads(l) for l in open(out)]
  assert [r['path'] for r in offline] == [os.path.join(folder, f) for f in ('a.wav', 'b.wav')]
  for r in offline:
    assert r['text'].split() == [w['word'] for w in r['words']]
    starts = [w['start_s'] for w in r['words']]
    assert starts == sorted(starts) and all(w['end_s'] > w['start_s'] for w in r['words'])
    assert all(w['end_s'] <= r['duration_s'] + 0.03 for w in r['words'])
  assert offline[0]['duration_s'] == pytest.approx(
      soundfile.info(os.path.join(folder, 'a.wav')).frames / 16000, abs=1e-3)
  assert sum(len(r['words']) for r in offline) > 0       # the comparison below is not trivial
  # Streamed in 90 ms chunks (3 encoder frames, the last block partial): the same labels at
  # the same frames, so the same text and word times.
  capsys.readouterr()
  streamed_out = str(tmp_path / 'streamed.jsonl')
  modes.transcribe(cfg, model_dir, audio=folder, output=streamed_out, stream=True, chunk_ms=90)
  streamed = [json.loads(l) for l in open(streamed_out)]
  assert streamed == offline
  partials = capsys.readouterr().err.splitlines()
  assert partials and offline[0]['text'].startswith(partials[0])   # a line per change


def test_beam_search_compiles_once_for_two_batches_of_a_bucket(exported):
  cfg, model_dir, _ = exported
  cfg = cfg.copy_and_resolve_references()
  cfg.eval.beam_width = 2
  cfg.eval.batch_size = 2
  model = models.build_model(cfg)
  data = helpers.tiny_dataset(cfg, n=12, seed=4)
  variables, stats = train_lib.load_trained(cfg, model_dir, model, data)
  evaluator = evaluate_lib.Evaluator(model, cfg)
  bucket = int(np.bincount(data.bucket).argmax())
  members = np.flatnonzero(data.bucket == bucket)
  assert members.size >= 4
  batches = [data.batch(members[i:i + 2], bucket, 2) for i in (0, 2)]
  evaluator.decode_batch(variables, stats, batches[0])
  first = dict(evaluator.traces)
  rows, _, _ = evaluator.decode_batch(variables, stats, batches[1])
  assert evaluator.traces == first == {'encode': 1, 'greedy': 0, 'pred_step': 1,
                                       'joint_step': 1}
  # The beam's labels come with frames, as greedy's do.
  assert all(len(tokens) == len(frames) for tokens, frames in rows)


def test_the_amnet_display_counts_valid_frames_per_branch_and_the_latest_backlog():
  routing = transcription.Routing(['slow', 'fast'])
  routing.add({'route': np.array([0, 1, 1]), 'backlog': np.array([0.02, 0.05, 0.04]),
               'valid': np.array([True, True, True])})
  routing.add({'route': np.array([1, 0, 0]), 'backlog': np.array([0.03, 0.0, 0.0]),
               'valid': np.array([True, False, False])})       # the stream's padded end
  assert routing.describe() == '[slow 25% fast 75% | backlog 0.030 s, max 0.050 s] '
  assert transcription.Routing(['main']).describe() == ''
