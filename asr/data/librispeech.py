"""LibriSpeech through tfds's `librispeech` builder: an optional extra. Without TensorFlow,
`asr/data/librispeech_dir.py` reads the distribution folders themselves.

It needs TensorFlow (tfds's `Audio` feature and the `librispeech` builder import it) and the
prepared data, ideally as array_record for random access:

  pip install tensorflow-cpu apache-beam        # the extra; not in requirements.txt
  tfds build librispeech --data_dir=DIR --file_format=array_record      # ~60 GB download
  # data already prepared as tfrecord: convert it once
  tfds convert_format --dataset_dir=DIR/librispeech --out_file_format=array_record

`load_librispeech(split, data_dir)` returns the same random-access shape as the embedded corpus:
`src[i]` -> {'audio': int16 16 kHz, 'transcript': normalised str, 'voice': 'librispeech/<speaker>',
'domain': 'librispeech', 'id': str}.
"""
import numpy as np

from asr import text

SPLITS = ('train_clean100', 'train_clean360', 'train_other500', 'dev_clean', 'dev_other',
          'test_clean', 'test_other')
INSTALL_HINT = ('pip install tensorflow-cpu apache-beam, then `tfds build librispeech '
                '--data_dir=DIR --file_format=array_record` (see asr/data/librispeech.py)')


class LibriSpeechUnavailable(RuntimeError):
  """TensorFlow or the prepared LibriSpeech data is missing; the message says what to do."""


def _text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def to_example(example: dict) -> dict:
  """A tfds librispeech example ('speech', 'text', 'speaker_id', 'id') in this project's shape."""
  audio = np.asarray(example['speech'])
  if audio.dtype != np.int16:
    audio = np.clip(audio, -32768, 32767).astype(np.int16)
  return {'audio': audio.reshape(-1),
          'transcript': text.normalize(_text(example['text'])),
          'voice': f'librispeech/{int(example["speaker_id"])}',
          'domain': 'librispeech',
          'id': _text(example['id'])}


class LibriSpeechSource:
  """Random access over a tfds source (or any sequence of tfds librispeech examples)."""

  def __init__(self, source):
    self._source = source

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    if not -len(self) <= index < len(self):
      raise IndexError(f'index {index} out of range for {len(self)} examples')
    return to_example(self._source[index % len(self)])

  def __iter__(self):
    for i in range(len(self)):
      yield self[i]


def load_librispeech(split: str, data_dir: str | None = None) -> LibriSpeechSource:
  """One LibriSpeech split; raises `LibriSpeechUnavailable` saying what is missing."""
  if split not in SPLITS:
    raise ValueError(f'unknown LibriSpeech split {split!r}; choose one of {list(SPLITS)}')
  try:
    import tensorflow  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    raise LibriSpeechUnavailable(
        f'LibriSpeech needs TensorFlow, which is not installed: {INSTALL_HINT}') from None
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  builder = tfds.builder('librispeech', data_dir=data_dir)
  prepared = builder.is_prepared()
  if prepared and builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise LibriSpeechUnavailable(
        f'LibriSpeech in {builder.data_dir} is stored as {builder.info.file_format.value}, '
        'which has no random access: `tfds convert_format --dataset_dir=... '
        '--out_file_format=array_record`')
  try:
    # Asked even when not prepared: `tfds.testing.mock_data` answers here without data.
    source = builder.as_data_source(split=split)
  except Exception as e:  # pylint: disable=broad-except
    if not prepared:
      raise LibriSpeechUnavailable(
          f'LibriSpeech is not prepared in {builder.data_dir}: {INSTALL_HINT}') from e
    raise
  return LibriSpeechSource(source)
