"""Build and read the embedded `voice_assistant` corpus.

  python -m asr.data.voice_assistant.corpus --config=tiny|demo|small|full [--workers=N]
      [--engine_dir=DIR [--packed_engines_only]] [--engines=flite,espeak] [--data_dir=DIR]

`build(config, data_dir)` makes it once (later calls reuse it); `load(config, split, data_dir)`
gives a random-access source of dicts: audio (int16, 16 kHz), transcript, voice, domain, id (str).
Data goes to `DEFAULT_DATA_DIR`: `<repo>/data/tfds`, or `$ASR_DATA_DIR` where set.
"""
import os
import pathlib
import sys
import time

import numpy as np
import tensorflow_datasets as tfds

from asr.data.voice_assistant.builder import CONFIGS
from asr.data.voice_assistant.builder import VoiceAssistant

__all__ = ['VoiceAssistant', 'CONFIGS', 'DEFAULT_DATA_DIR', 'build', 'load', 'ExampleSource',
           'NotBuiltError']

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
DEFAULT_DATA_DIR = os.environ.get('ASR_DATA_DIR') or str(REPO_ROOT / 'data' / 'tfds')
TEXT_FEATURES = ('transcript', 'voice', 'domain', 'id')


class NotBuiltError(FileNotFoundError):
  """The corpus asked for has not been built in that data dir."""


def _builder(config_name: str, data_dir: str | None, **kwargs) -> VoiceAssistant:
  names = [c.name for c in CONFIGS]
  if config_name not in names:
    raise ValueError(f'unknown voice_assistant config {config_name!r}; choose one of {names}')
  return VoiceAssistant(config=config_name, data_dir=data_dir or DEFAULT_DATA_DIR, **kwargs)


def build(config_name: str, data_dir: str | None = None, workers: int | None = None, *,
          engine_dir: str | None = None, engines: tuple | None = None,
          search_system: bool = True) -> VoiceAssistant:
  """Builds `voice_assistant/<config_name>` unless already built; returns the builder.
  `search_system=False`: engines from `engine_dir` only (what a machine without apt has)."""
  builder = _builder(config_name, data_dir, workers=workers, engine_dir=engine_dir,
                     engines_allowed=tuple(engines) if engines else None,
                     search_system=search_system)
  if builder.is_prepared():
    print(f'voice_assistant/{config_name} already built in {builder.data_dir}')
    return builder
  start = time.time()
  # Our own bar counts utterances across all splits; tfds's per-split bars would interleave.
  tfds.disable_progress_bar()
  try:
    builder.download_and_prepare(file_format='array_record')
  finally:
    tfds.enable_progress_bar()
  seconds = time.time() - start
  hours = sum(builder.info.metadata.get('hours', {}).get('split', {}).values())
  print(f'built voice_assistant/{config_name}: {hours:.2f} hours of audio in {seconds:.1f} s '
        f'({builder._workers} workers) -> {builder.data_dir}')  # pylint: disable=protected-access
  return builder


class ExampleSource:
  """Random access to one split: `len(src)`, `src[i]` -> dict of numpy arrays and str."""

  def __init__(self, source):
    self._source = source

  def __len__(self) -> int:
    return len(self._source)

  @staticmethod
  def _decode(example: dict) -> dict:
    out = dict(example)
    for key in TEXT_FEATURES:
      if isinstance(out.get(key), bytes):
        out[key] = out[key].decode('utf-8')
    out['audio'] = np.array(out['audio'], dtype=np.int16)   # a writable copy, not a view
    return out

  def __getitem__(self, index: int) -> dict:
    if not -len(self) <= index < len(self):
      raise IndexError(f'index {index} out of range for a split of {len(self)} examples')
    return self._decode(self._source[index % len(self)])

  def __getitems__(self, indices) -> list[dict]:
    return [self._decode(e) for e in self._source.__getitems__(list(indices))]

  def __iter__(self):
    for i in range(len(self)):
      yield self[i]


def load(config_name: str, split: str, data_dir: str | None = None) -> ExampleSource:
  """The split as a random-access source; raises `NotBuiltError` naming the build command."""
  builder = _builder(config_name, data_dir)
  if not builder.is_prepared():
    raise NotBuiltError(
        f'voice_assistant/{config_name} is not built in {builder.data_dir}; build it with '
        f'`python -m asr.data.voice_assistant.corpus --config={config_name}'
        + (f' --data_dir={data_dir}`' if data_dir else '`'))
  splits = sorted(builder.info.splits.keys())
  if split not in splits:
    raise ValueError(f'voice_assistant/{config_name} has no split {split!r}; it has {splits}')
  return ExampleSource(builder.as_data_source(split=split))


def main(argv):
  del argv
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  engines = tuple(e for e in f.engines.split(',') if e) if f.engines else None
  if f.packed_engines_only and not f.engine_dir:
    raise app.UsageError('--packed_engines_only needs --engine_dir')
  build(f.config, f.data_dir, f.workers, engine_dir=f.engine_dir, engines=engines,
        search_system=not f.packed_engines_only)


if __name__ == '__main__':
  from absl import app
  from absl import flags
  flags.DEFINE_string('config', 'tiny', 'tiny, demo, small or full')
  flags.DEFINE_string('data_dir', None, f'default {DEFAULT_DATA_DIR} ($ASR_DATA_DIR)')
  flags.DEFINE_integer('workers', None, 'synthesis processes (default: all cores)')
  flags.DEFINE_string('engine_dir', None,
                      'folder with TTS engines (bin/, lib/, share/), e.g. made by '
                      '`python -m asr.data.voice_assistant.engines --pack=DIR` on a machine '
                      'that has them')
  flags.DEFINE_string('engines', None, 'comma-separated subset of flite,festival,espeak,piper,pico')
  flags.DEFINE_bool('packed_engines_only', False,
                    'take engines from --engine_dir alone: no PATH, no piper (checks a packed '
                    'folder on a machine that has the engines installed too)')
  sys.exit(app.run(main))
