"""Tests for folder-of-recordings ingestion, with good and broken files written here."""
import numpy as np
import pytest
import soundfile as sf

from asr.data import folder

GOOD = ('rate_16k', 'rate_8k', 'rate_44k', 'rate_48k_stereo', 'pcm24', 'float32',
        'sub/nested_flac', 'upper_case')


def _sine(sr, seconds=1.0, hz=440.0, amplitude=0.5):
  t = np.arange(int(sr * seconds)) / sr
  return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _peak_hz(x, sr=16000):
  spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
  return np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)]


@pytest.fixture()
def recordings(tmp_path):
  d = tmp_path / 'recordings'
  (d / 'sub').mkdir(parents=True)
  sf.write(d / 'rate_16k.wav', _sine(16000), 16000, subtype='PCM_16')
  sf.write(d / 'rate_8k.wav', _sine(8000), 8000, subtype='PCM_16')
  sf.write(d / 'rate_44k.wav', _sine(44100), 44100, subtype='PCM_16')
  stereo = np.stack([_sine(48000), 0.5 * _sine(48000)], axis=1)
  sf.write(d / 'rate_48k_stereo.wav', stereo, 48000, subtype='PCM_16')
  sf.write(d / 'pcm24.wav', _sine(16000), 16000, subtype='PCM_24')
  sf.write(d / 'float32.wav', _sine(16000), 16000, subtype='FLOAT')
  sf.write(d / 'sub' / 'nested_flac.flac', _sine(22050), 22050, format='FLAC')
  sf.write(d / 'upper_case.WAV', _sine(16000), 16000)
  # Broken ones.
  (d / 'empty.wav').write_bytes(b'')
  sf.write(d / 'zero_length.wav', np.zeros(0, np.float32), 16000, subtype='PCM_16')
  sf.write(d / 'all_zero.wav', np.zeros(16000, np.float32), 16000, subtype='PCM_16')
  nan = _sine(16000)
  nan[100:200] = np.nan
  sf.write(d / 'nan_float.wav', nan, 16000, subtype='FLOAT')
  whole = (d / 'rate_16k.wav').read_bytes()
  (d / 'truncated.wav').write_bytes(whole[:len(whole) // 2])
  flac = (d / 'sub' / 'nested_flac.flac').read_bytes()
  (d / 'truncated_flac.flac').write_bytes(flac[:len(flac) // 2])
  (d / 'not_audio.wav').write_text('this is a text file, not a recording\n')
  sf.write(d / 'no_transcript.wav', _sine(16000), 16000)
  sf.write(d / 'bad_transcript.wav', _sine(16000), 16000)
  (d / 'notes.txt').write_text('ignored\n')
  lines = [f'{name}\tPlay track {i}' for i, name in enumerate(GOOD)]
  lines += [f'{name}\tbroken file' for name in ('empty', 'zero_length', 'all_zero', 'nan_float',
                                                'truncated', 'truncated_flac', 'not_audio')]
  lines += ['bad_transcript\t\u4f60\u597d', 'ghost\tI have no audio', '']
  (d / 'transcripts.tsv').write_text('\n'.join(lines), encoding='utf-8')
  return d


def test_good_files_load_as_16k_mono_int16(recordings):
  examples, report = folder.load_folder(str(recordings))
  by_id = {ex['id']: ex for ex in examples}
  assert set(by_id) == set(GOOD)
  for name in GOOD:
    ex = by_id[name]
    assert ex['audio'].dtype == np.int16 and ex['audio'].ndim == 1
    assert abs(len(ex['audio']) - 16000) <= 1, name          # 1 s at any input rate
    assert _peak_hz(ex['audio'].astype(np.float32)) == pytest.approx(440, abs=2), name
    assert ex['voice'] == 'folder' and ex['domain'] == 'folder'
  assert by_id['rate_8k']['transcript'] == 'play track one'
  assert report.loaded == len(GOOD)
  assert report.seconds == pytest.approx(len(GOOD), abs=0.01)
  assert report.ignored == ['notes.txt']


def test_bit_depths_and_channels_keep_their_values(recordings):
  examples, _ = folder.load_folder(str(recordings))
  by_id = {ex['id']: ex['audio'].astype(np.int32) for ex in examples}
  reference = np.round(_sine(16000) * 32767).astype(np.int32)
  for name in ('rate_16k', 'pcm24', 'float32'):
    assert np.abs(by_id[name] - reference).max() <= 2, name
  # Stereo is the mean of the channels: (1 + 0.5) / 2 of the sine's 0.5 amplitude.
  peak = np.abs(by_id['rate_48k_stereo'][100:-100]).max() / 32767
  assert peak == pytest.approx(0.375, abs=0.01)


def test_every_bad_file_is_reported_by_name_with_its_reason(recordings):
  _, report = folder.load_folder(str(recordings))
  reasons = dict(report.skipped)
  expected = {'empty.wav': 'empty file', 'zero_length.wav': 'no samples',
              'all_zero.wav': 'all samples are zero', 'nan_float.wav': 'NaN or infinite samples',
              'truncated.wav': 'truncated', 'truncated_flac.flac': 'unreadable audio',
              'not_audio.wav': 'unreadable audio', 'no_transcript.wav': 'no transcript',
              'bad_transcript.wav': 'transcript does not normalise',
              'ghost': 'transcript without audio'}
  for name, reason in expected.items():
    assert reasons[name].startswith(reason), (name, reasons[name])
  assert len(report.skipped) == len(expected)
  counts = report.counts()
  assert counts['unreadable audio'] == 2 and sum(counts.values()) == len(expected)
  summary = report.summary()
  assert f'loaded {len(GOOD)} recordings' in summary and f'skipped {len(expected)}' in summary
  for name in expected:
    assert name in summary


def test_kaldi_text_file_and_ids_with_extensions(tmp_path):
  sf.write(tmp_path / 'utt1.wav', _sine(16000), 16000)
  sf.write(tmp_path / 'utt2.flac', _sine(16000), 16000)
  (tmp_path / 'text').write_text('utt1 HELLO THERE\nutt2.flac set a timer for 5 minutes\n')
  examples, report = folder.load_folder(str(tmp_path))
  assert {ex['id']: ex['transcript'] for ex in examples} == {
      'utt1': 'hello there', 'utt2': 'set a timer for five minutes'}
  assert not report.skipped


def test_tsv_header_duplicates_and_empty_lines_are_handled(tmp_path):
  sf.write(tmp_path / 'a.wav', _sine(16000), 16000)
  sf.write(tmp_path / 'b.wav', _sine(16000), 16000)
  transcripts = tmp_path / 'elsewhere.tsv'
  transcripts.write_text('id\ttext\na\tfirst\na\tsecond\nb\t\n\n', encoding='utf-8')
  examples, report = folder.load_folder(str(tmp_path), str(transcripts))
  assert [(ex['id'], ex['transcript']) for ex in examples] == [('a', 'first')]
  reasons = [reason for _, reason in report.skipped]
  assert 'duplicate id, first one kept' in reasons and 'empty transcript' in reasons
  assert ('b.wav', 'no transcript') in report.skipped


def test_recordings_to_transcribe_need_no_transcripts(tmp_path):
  sf.write(tmp_path / 'new.wav', _sine(8000), 8000)
  examples, report = folder.load_folder(str(tmp_path), require_transcripts=False)
  assert [(ex['id'], ex['transcript'], len(ex['audio'])) for ex in examples] == [
      ('new', '', 16000)]
  assert report.loaded == 1


def test_non_utf8_transcript_file_is_rejected_with_its_name(tmp_path):
  sf.write(tmp_path / 'a.wav', _sine(16000), 16000)
  (tmp_path / 'transcripts.tsv').write_bytes(b'a\tcaf\xe9 au lait\n')
  with pytest.raises(folder.FolderError, match=r'transcripts\.tsv: not UTF-8 .*line 1'):
    folder.load_folder(str(tmp_path))


def test_unusable_folders_are_rejected_clearly(tmp_path):
  with pytest.raises(folder.FolderError, match='not a folder'):
    folder.load_folder(str(tmp_path / 'missing'))
  sf.write(tmp_path / 'a.wav', _sine(16000), 16000)
  with pytest.raises(folder.FolderError, match='no transcript file'):
    folder.load_folder(str(tmp_path))
  empty = tmp_path / 'nothing'
  empty.mkdir()
  (empty / 'transcripts.tsv').write_text('a\thello\n')
  with pytest.raises(folder.FolderError, match=r'no \.wav/\.flac files'):
    folder.load_folder(str(empty))
  broken = tmp_path / 'broken'
  broken.mkdir()
  (broken / 'x.wav').write_bytes(b'')
  (broken / 'transcripts.tsv').write_text('x\thello\n')
  with pytest.raises(folder.FolderError, match=r'no usable recordings.*x\.wav: empty file'):
    folder.load_folder(str(broken))


def test_read_audio_errors_are_one_line_value_errors_naming_the_file(tmp_path):
  path = tmp_path / 'garbage.wav'
  path.write_bytes(b'RIFF\x00\x00\x00\x00WAVEjunkjunk')
  with pytest.raises(ValueError) as info:
    folder.read_audio(path)
  assert isinstance(info.value, folder.AudioError)
  assert str(path) in str(info.value) and '\n' not in str(info.value)
  with pytest.raises(folder.AudioError, match='unreadable'):
    folder.read_audio(tmp_path / 'does_not_exist.wav')


def test_read_audio_returns_float_mono_16k_within_full_scale(tmp_path):
  sf.write(tmp_path / 'x.wav', _sine(44100, seconds=0.5), 44100, subtype='PCM_24')
  audio = folder.read_audio(tmp_path / 'x.wav')
  assert audio.dtype == np.float32 and audio.ndim == 1 and abs(len(audio) - 8000) <= 1
  assert np.abs(audio[200:-200]).max() == pytest.approx(0.5, abs=0.01)
  sf.write(tmp_path / 'loud.wav', _sine(16000, amplitude=1.5), 16000, subtype='FLOAT')
  loud = folder.read_audio(tmp_path / 'loud.wav')
  assert loud.max() == 1.0 and loud.min() == -1.0
