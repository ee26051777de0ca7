"""LibriSpeech read from its distribution folders, written here with good and broken files."""
import os

import numpy as np
import pytest
import soundfile as sf

from asr.data import batching
from asr.data import folder
from asr.data import librispeech_dir
from experiments import data as data_lib
from experiments import sweep as sweep_lib
from experiments import validate
from experiments.configs import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = f'{ROOT}/experiments/configs/librispeech.py'
# id -> (split, raw transcript line text, normalised transcript) of every usable utterance.
GOOD = {
    '174-50561-0000': ('dev-clean', 'A WHITE-HOT FIRE', 'a white hot fire'),
    '84-121123-0000': ('dev-clean', 'GO DO YOU HEAR', 'go do you hear'),
    '84-121123-0001': ('dev-clean', "BUT IN LESS THAN FIVE MINUTES THE STAIRCASE GROANED",
                       'but in less than five minutes the staircase groaned'),
    '121-121726-0000': ('test-clean', "ALSO A POPULAR CONTRIVANCE",
                        'also a popular contrivance'),
    '61-70968-0000': ('test-clean', "HE BEGAN A CONFUSED COMPLAINT AGAINST THE WIZARD'S",
                      "he began a confused complaint against the wizard's"),
}
RESAMPLED = '174-50561-0000'         # written at 8 kHz
DAMAGED = '61-70968-0001'            # header intact, audio cut short: fails only when decoded


def _signal(seed: int, seconds: float, sr: int = 16000) -> np.ndarray:
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * sr)) / sr
  # Near full scale: a float round trip that scales by 32767 instead of 32768 changes samples
  # above half scale.
  x = 0.85 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)
  return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def _chapter(root, split, utt_id):
  speaker, chapter, _ = utt_id.split('-')
  d = root / split / speaker / chapter
  d.mkdir(parents=True, exist_ok=True)
  return d


@pytest.fixture()
def libri(tmp_path):
  """(root, {id: int16 audio written}) of two splits, four speakers, and these problems:
  an utterance without a transcript line, a line without audio, a garbage .flac, an empty
  chapter folder, a FLAC cut short, and a stray file."""
  root = tmp_path / 'LibriSpeech'
  root.mkdir()
  (root / 'README.TXT').write_text('the corpus readme\n')
  written, lines = {}, {}
  for seed, (utt_id, (split, raw, _)) in enumerate(GOOD.items()):
    sr = 8000 if utt_id == RESAMPLED else 16000
    written[utt_id] = _signal(seed, 0.6 + 0.2 * seed, sr)
    sf.write(_chapter(root, split, utt_id) / f'{utt_id}.flac', written[utt_id], sr,
             format='FLAC', subtype='PCM_16')
    lines.setdefault((split, utt_id.rsplit('-', 1)[0]), []).append(f'{utt_id} {raw}')
  # Audio without a transcript line.
  sf.write(_chapter(root, 'dev-clean', '84-121123-0002') / '84-121123-0002.flac',
           _signal(9, 0.5), 16000, format='FLAC')
  # A transcript line without audio.
  lines[('dev-clean', '84-121123')].append('84-121123-0003 I HAVE NO AUDIO')
  # Garbage with a .flac name, its line present.
  (_chapter(root, 'dev-clean', '174-50561-0001') / '174-50561-0001.flac').write_bytes(
      b'not a flac file at all ' * 20)
  lines[('dev-clean', '174-50561')].append('174-50561-0001 GARBAGE BYTES')
  # An empty chapter folder.
  (root / 'dev-clean' / '84' / '121550').mkdir()
  # Cut in half: the header still says how long it is.
  whole = _signal(10, 2.0)
  path = _chapter(root, 'test-clean', DAMAGED) / f'{DAMAGED}.flac'
  sf.write(path, whole, 16000, format='FLAC')
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
  lines[('test-clean', '61-70968')].append(f'{DAMAGED} CUT SHORT')
  (root / 'test-clean' / '61' / '70968' / 'notes.txt').write_text('stray\n')
  for (split, chapter_id), chapter_lines in lines.items():
    speaker, chapter = chapter_id.split('-')
    (root / split / speaker / chapter / f'{chapter_id}.trans.txt').write_text(
        '\n'.join(chapter_lines) + '\n')
  return root, written


def _ids(split):
  return sorted((i for i, v in GOOD.items() if v[0] in split.split('+')), key=_path_order)


def _path_order(utt_id):
  return '/'.join(utt_id.split('-'))      # speaker/chapter/utterance folders, sorted as text


def test_examples_are_read_with_normalised_transcripts(libri):
  root, written = libri
  src, report = librispeech_dir.load(root, 'dev-clean')
  assert len(src) == 3 and report.loaded == 3
  examples = list(src)
  assert [ex['id'] for ex in examples] == ['174-50561-0000', '84-121123-0000', '84-121123-0001']
  for ex in examples:
    assert ex['transcript'] == GOOD[ex['id']][2]
    assert ex['voice'] == f'librispeech/{ex["id"].split("-")[0]}'
    assert ex['domain'] == 'librispeech'
    assert ex['audio'].dtype == np.int16 and ex['audio'].ndim == 1
    if ex['id'] != RESAMPLED:
      np.testing.assert_array_equal(ex['audio'], written[ex['id']])
  resampled = examples[0]['audio']
  assert resampled.size == 2 * written[RESAMPLED].size          # 8 kHz -> 16 kHz
  # Durations come from the headers: 0.6 s at 8 kHz and 0.8 s, 1.0 s at 16 kHz.
  assert report.seconds == pytest.approx(0.6 + 0.8 + 1.0)


def test_every_problem_is_reported_by_name(libri):
  root, _ = libri
  _, report = librispeech_dir.load(root, 'dev-clean+test-clean')
  skipped = dict(report.skipped)
  assert skipped.pop('dev-clean/84/121123/84-121123-0002.flac') == 'no transcript'
  assert skipped.pop('dev-clean/84/121123/84-121123.trans.txt (84-121123-0003)') == (
      'transcript without audio')
  assert skipped.pop('dev-clean/174/50561/174-50561-0001.flac').startswith('unreadable audio')
  assert skipped.pop('dev-clean/84/121550') == 'empty chapter folder'
  assert not skipped
  assert report.ignored == ['test-clean/61/70968/notes.txt']
  summary = report.summary()
  assert 'skipped 4' in summary and '84-121123-0002.flac: no transcript' in summary
  assert report.counts() == {'no transcript': 1, 'transcript without audio': 1,
                             'unreadable audio': 1, 'empty chapter folder': 1}


def test_splits_join_with_plus(libri):
  root, _ = libri
  src, report = librispeech_dir.load(root, 'dev-clean+test-clean')
  # test-clean's FLAC that is cut short passes the header probe: it is in the index.
  expected = _ids('dev-clean') + sorted(_ids('test-clean') + [DAMAGED], key=_path_order)
  assert src.ids == expected
  assert len(src) == 6 and report.loaded == 6
  only_test, _ = librispeech_dir.load(root, 'test-clean')
  assert len(only_test) == 3


def test_audio_damaged_past_its_header_is_named_when_read_and_skipped_by_the_dataset(libri):
  root, written = libri
  src, _ = librispeech_dir.load(root, 'test-clean')
  with pytest.raises(batching.UnreadableExample, match=f'{DAMAGED}.flac') as raised:
    src[src.ids.index(DAMAGED)]
  assert '\n' not in str(raised.value)
  dataset = batching.Dataset(src, batching.Buckets((4.0,)), keep_long=True)
  assert sorted(dataset.ids) == sorted(_ids('test-clean'))
  reason, = dataset.skipped.reasons
  assert reason.startswith('unreadable audio')
  assert dataset.skipped.reasons[reason][0].endswith(f'test-clean/61/70968/{DAMAGED}.flac')
  for utt_id, audio in zip(dataset.ids, dataset.audio):
    np.testing.assert_array_equal(audio, written[utt_id])


def test_audio_is_read_only_when_an_example_is_accessed(libri, monkeypatch):
  root, _ = libri
  calls = []
  real_read = sf.read

  def counting_read(*args, **kwargs):
    calls.append(args[0])
    return real_read(*args, **kwargs)

  monkeypatch.setattr(sf, 'read', counting_read)
  src, _ = librispeech_dir.load(root, 'dev-clean+test-clean')
  assert not calls
  src[2]
  assert len(calls) == 1 and calls[0].endswith('84-121123-0001.flac')
  src[2]
  assert len(calls) == 2                # nothing kept in memory


@pytest.mark.parametrize('splits, message', [
    ('dev-clean+dev-other', r'LibriSpeech/dev-other: split folder not found; .* holds '
                            r'dev-clean, test-clean$'),
    ('dev_clean', r"'dev_clean' in 'dev_clean' is not a LibriSpeech split; one of "
                  r'train-clean-100, .*test-other'),
    ('dev-clean+dev-clean', 'lists a split twice'),
])
def test_bad_split_names_fail_in_one_line(libri, splits, message):
  root, _ = libri
  with pytest.raises(folder.FolderError, match=message) as raised:
    librispeech_dir.load(root, splits)
  assert '\n' not in str(raised.value)


def test_missing_root_and_split_without_recordings_fail_in_one_line(libri, tmp_path):
  root, _ = libri
  with pytest.raises(folder.FolderError, match=r'nowhere: not a folder') as raised:
    librispeech_dir.load(tmp_path / 'nowhere', 'dev-clean')
  assert '\n' not in str(raised.value)
  (root / 'dev-other' / '1' / '2').mkdir(parents=True)
  with pytest.raises(folder.FolderError, match='dev-other: no usable recordings') as raised:
    librispeech_dir.load(root, 'dev-other')
  assert '\n' not in str(raised.value)
  # Beside a usable split the empty one is a named skip.
  _, report = librispeech_dir.load(root, 'dev-clean+dev-other')
  assert ('dev-other/1/2', 'empty chapter folder') in report.skipped
  assert ('dev-other', 'no usable recordings in the split folder') in report.skipped


def _cfg(root, **data):
  cfg = common.base_config()
  cfg.data.update({'source': 'librispeech_dir', 'librispeech_dir': str(root),
                   'train_split': 'dev-clean', 'eval_split': 'test-clean', **data})
  return cfg


def test_config_source_returns_the_folders(libri):
  root, written = libri
  logged = []
  src = data_lib.source(_cfg(root), 'dev-clean+test-clean', log=logged.append)
  assert len(src) == 6
  assert src[0]['id'] == '174-50561-0000'
  np.testing.assert_array_equal(src[1]['audio'], written['84-121123-0000'])
  assert 'skipped 4' in logged[0] and '84-121123-0002.flac' in logged[0]
  dataset = data_lib.load_split(_cfg(root), 'dev-clean', log=logged.append)
  assert dataset.ids == _ids('dev-clean')
  assert data_lib.fingerprint(_cfg(root)) == f'librispeech_dir: {root}'


def test_validate_names_the_key(libri, tmp_path):
  root, _ = libri
  validate.check(_cfg(root, extra_eval_splits='dev-clean+test-clean'))
  for value in ('', str(tmp_path / 'nowhere')):
    with pytest.raises(validate.ConfigError, match='^config.data.librispeech_dir: ') as raised:
      validate.check(_cfg(value))
    assert '\n' not in str(raised.value)
  with pytest.raises(validate.ConfigError, match="^config.data.train_split: 'base_train'"):
    validate.check(_cfg(root, train_split='base_train'))
  with pytest.raises(validate.ConfigError,
                     match='^config.data.extra_eval_splits: .*dev-other: split folder not found'):
    validate.check(_cfg(root, extra_eval_splits='test-clean, dev-other'))


def test_recipe_config_validates_with_the_folders_present(tmp_path):
  root = tmp_path / 'LibriSpeech'
  for split in librispeech_dir.SPLITS:
    (root / split).mkdir(parents=True)
  cfg = sweep_lib.load_config(RECIPE, {'data.librispeech_dir': str(root)})
  assert cfg.data.source == 'librispeech_dir' and cfg.eval.max_utterances == 0
  assert cfg.data.train_split == 'train-clean-100+train-clean-360+train-other-500'
  assert cfg.data.extra_eval_splits == 'dev-other,test-clean,test-other'
  assert (cfg.model.encoder.layers, cfg.model.encoder.units) == (5, 640)
  assert cfg.data.lazy_audio and not cfg.data.cache_features and cfg.data.prefetch_batches
  with pytest.raises(validate.ConfigError, match='^config.data.librispeech_dir: required'):
    sweep_lib.load_config(RECIPE)
  (root / 'test-other').rmdir()
  with pytest.raises(validate.ConfigError, match='^config.data.extra_eval_splits: .*test-other'):
    sweep_lib.load_config(RECIPE, {'data.librispeech_dir': str(root)})


def _counting_reads(monkeypatch):
  calls = []
  real_read = sf.read

  def counting_read(*args, **kwargs):
    calls.append(os.path.basename(str(args[0]))[:-len('.flac')])
    return real_read(*args, **kwargs)
  monkeypatch.setattr(sf, 'read', counting_read)
  return calls


def _assert_same_batch(a, b):
  assert sorted(a) == sorted(b)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_lazy_dataset_gives_the_in_memory_batches_and_reads_only_theirs(libri, monkeypatch):
  root, _ = libri
  src, _ = librispeech_dir.load(root, 'dev-clean')
  buckets = batching.Buckets((0.9, 3.0))     # 0.6 s (read at 8 kHz) + 0.8 s, then 1.0 s
  eager = batching.Dataset(src, buckets)
  calls = _counting_reads(monkeypatch)
  lazy = batching.Dataset(src, buckets, lazy=True)
  assert not calls                                      # bucketed from the headers alone
  assert lazy.ids == eager.ids and lazy.transcripts == eager.transcripts
  np.testing.assert_array_equal(lazy.bucket, eager.bucket)
  np.testing.assert_array_equal(lazy.num_samples, [a.size for a in eager.audio])
  assert lazy.label_caps == eager.label_caps and lazy.seconds() == eager.seconds()
  per_epoch = lazy.batches_per_epoch(2)
  assert per_epoch == eager.batches_per_epoch(2) == 2
  for step in range(3 * per_epoch):
    del calls[:]
    batch = lazy.train_batch(step, 2, seed=3)
    _assert_same_batch(batch, eager.train_batch(step, 2, seed=3))
    epoch, i = divmod(step, per_epoch)
    _, indices = eager.epoch_plan(2, 3, epoch)[i]
    assert calls == [eager.ids[k] for k in indices]   # its files, each once, nothing else
  # Step k's batch alone, as a resumed run asks for it first.
  resumed = batching.Dataset(src, buckets, lazy=True)
  _assert_same_batch(resumed.train_batch(5, 2, seed=3), eager.train_batch(5, 2, seed=3))
  for (a, ia), (b, ib) in zip(lazy.eval_batches(2), eager.eval_batches(2)):
    _assert_same_batch(a, b)
    np.testing.assert_array_equal(ia, ib)


def test_lazy_dataset_pads_a_file_found_damaged_and_names_it(libri):
  root, _ = libri
  src, _ = librispeech_dir.load(root, 'test-clean')
  lazy = batching.Dataset(src, batching.Buckets((4.0,)), lazy=True)
  assert DAMAGED in lazy.ids                            # its header looked fine
  k = lazy.ids.index(DAMAGED)
  batch = lazy.batch([k, (k + 1) % len(lazy)], 0, 3)
  np.testing.assert_array_equal(batch['weights'], [0.0, 1.0, 0.0])
  assert not batch['audio'][0].any() and batch['audio_paddings'][0].all()
  reason, = lazy.skipped.reasons
  assert reason.startswith('unreadable audio')
  assert lazy.skipped.reasons[reason][0].endswith(f'{DAMAGED}.flac')
  lazy.batch([k], 0, 1)
  assert lazy.skipped.count == 1                        # named once, however often it is read
  with pytest.raises(ValueError, match='set data.cache_features=False$'):
    lazy.cache_log_mel(lambda audio, paddings: (audio, paddings))
  with pytest.raises(TypeError, match='meta'):
    batching.Dataset([{'audio': np.ones(10, np.int16), 'transcript': 'a'}],
                     batching.Buckets((4.0,)), lazy=True)


def test_prefetch_gives_the_same_batches_bounded_and_raises_in_order(libri):
  root, _ = libri
  src, _ = librispeech_dir.load(root, 'dev-clean')
  lazy = batching.Dataset(src, batching.Buckets((0.9, 3.0)), lazy=True)
  built = []

  def build(step):
    built.append(step)
    if step == 5:
      raise RuntimeError('step 5 failed')
    return lazy.train_batch(step, 2, seed=1)
  reference = batching.Dataset(src, batching.Buckets((0.9, 3.0)), lazy=True)
  prefetch = batching.Prefetch(build, 1, 8, depth=2)
  import time  # pylint: disable=g-import-not-at-top
  deadline = time.monotonic() + 10
  while len(built) < 3 and time.monotonic() < deadline:
    time.sleep(0.01)
  time.sleep(0.2)                  # room for a fourth, were the queue not bounded
  assert built == [1, 2, 3]        # two queued, the third waiting for room
  with pytest.raises(ValueError, match='step 2 asked, step 1 is next'):
    prefetch.get(2)
  for step in range(1, 5):
    _assert_same_batch(prefetch.get(step), reference.train_batch(step, 2, seed=1))
  with pytest.raises(RuntimeError, match='step 5 failed'):
    prefetch.get(5)
  prefetch.close()
  assert built == [1, 2, 3, 4, 5]  # nothing built after the failure


def test_lazy_audio_is_refused_where_it_cannot_work(libri):
  root, _ = libri
  with pytest.raises(validate.ConfigError, match='^config.data.cache_features: True holds'):
    validate.check(_cfg(root, lazy_audio=True))
  validate.check(_cfg(root, lazy_audio=True, cache_features=False))
  cfg = common.base_config()
  cfg.data.update({'source': 'folder', 'folder': str(root), 'lazy_audio': True,
                   'cache_features': False})
  with pytest.raises(validate.ConfigError, match="^config.data.lazy_audio: True needs "
                                                 "source=librispeech_dir"):
    validate.check(cfg)
  lazy_cfg = _cfg(root, lazy_audio=True, cache_features=False)
  assert data_lib.load_split(lazy_cfg, 'dev-clean', log=lambda *_: None, train=True).lazy
  assert not data_lib.load_split(lazy_cfg, 'dev-clean', log=lambda *_: None).lazy


def test_the_tokenizer_command_trains_on_a_librispeech_split(libri, tmp_path, capsys):
  from asr import text_pieces  # pylint: disable=g-import-not-at-top
  root, _ = libri
  out = tmp_path / 'pieces' / 'tokenizer.model'
  assert text_pieces.main(['train', f'--librispeech_dir={root}', '--splits=dev-clean+test-clean',
                           '--vocab_size=40', f'--out={out}', '--threads=1']) == 0
  assert f'use --config.data.tokenizer=pieces:{out}' in capsys.readouterr().out
  tok = text_pieces.load(f'pieces:{out}')
  for _, _, transcript in GOOD.values():
    assert tok.decode(tok.encode(transcript)) == transcript
  assert text_pieces.main(['train', f'--librispeech_dir={root}', '--splits=dev_clean',
                           f'--out={out}']) == 1
  assert "'dev_clean' in 'dev_clean' is not a LibriSpeech split" in capsys.readouterr().err
