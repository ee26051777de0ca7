"""LibriSpeech read from its distribution folders: no TensorFlow, no preparation step.

  ROOT/SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac
  ROOT/SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt     # lines `SPEAKER-CHAPTER-UTT TEXT`

  src, report = load('/data/LibriSpeech', 'train-clean-100+train-clean-360')
  print(report.summary())
  src[0]  # {'audio': int16 16 kHz, 'transcript', 'voice': 'librispeech/<speaker>', ...}

Building the source walks the folders, reads the transcript files and probes every FLAC's
header (`soundfile.info`, which decodes no audio), so that a file with no readable header is a
named skip before training starts rather than a failure hours into loading; the audio is
decoded only by `src[i]`, resampled to 16 kHz mono if it is not. A file damaged past its header
shows only then: `src[i]` raises `batching.UnreadableExample`, which `batching.Dataset` counts
as a skip by path. Every other problem is a named skip in the report too (audio without a
transcript line, a line without audio, a transcript that does not normalise, an empty chapter
or speaker folder); a missing ROOT or split folder, an unknown split name, or a transcript file
that is not UTF-8 raises `folder.FolderError` in one line.

  python -m asr.data.librispeech_dir ROOT dev-clean+dev-other    # prints the report and hours
"""
import math
import pathlib
import sys

import numpy as np

from asr import text
from asr.data import batching
from asr.data import folder

SPLITS = ('train-clean-100', 'train-clean-360', 'train-other-500', 'dev-clean', 'dev-other',
          'test-clean', 'test-other')
FolderError = folder.FolderError


def parse_splits(splits: str) -> tuple[str, ...]:
  """'train-clean-100+train-clean-360' -> the split names, each official and listed once."""
  names = tuple(s.strip() for s in splits.split('+'))
  for name in names:
    if name not in SPLITS:
      raise FolderError(f'{name!r} in {splits!r} is not a LibriSpeech split; one of '
                        f'{", ".join(SPLITS)} (join several with +)')
  if len(set(names)) != len(names):
    raise FolderError(f'{splits!r} lists a split twice')
  return names


def split_dirs(root, splits: str) -> list[pathlib.Path]:
  """The folders of `splits` under `root`; `FolderError` naming the first one that is missing."""
  root = pathlib.Path(root)
  names = parse_splits(splits)
  if not root.is_dir():
    raise FolderError(f'{root}: not a folder (expected the LibriSpeech folder holding '
                      f'{", ".join(names)})')
  for name in names:
    if not (root / name).is_dir():
      present = sorted(p.name for p in root.iterdir() if p.name in SPLITS)
      raise FolderError(f'{root / name}: split folder not found; {root} holds '
                        f'{", ".join(present) or "no LibriSpeech split"}')
  return [root / name for name in names]


def resampled_length(frames: int, rate: int) -> int:
  """Samples at 16 kHz that `folder.read_audio` returns for `frames` at `rate`: the length
  scipy's resample_poly gives, or resample's (rates with no small common factor)."""
  if rate == batching.SAMPLE_RATE:
    return frames
  g = math.gcd(rate, batching.SAMPLE_RATE)
  up, down = batching.SAMPLE_RATE // g, rate // g
  if max(up, down) > 2000:
    return int(round(frames * batching.SAMPLE_RATE / rate))
  return -(-frames * up // down)


def _probe(path: pathlib.Path) -> tuple[float, int]:
  """(seconds, samples at 16 kHz) from the header alone; `folder.AudioError` if there is no
  usable one."""
  info = folder.read_info(path)
  if info.frames <= 0:
    raise folder.AudioError(path, 'no samples', f'{info.format} {info.subtype}, 0 frames')
  return info.frames / info.samplerate, resampled_length(info.frames, int(info.samplerate))


def _index_chapter(chapter: pathlib.Path, root: pathlib.Path, report: folder.FolderReport,
                   index: list, seen: dict):
  rel = chapter.relative_to(root).as_posix()
  speaker = chapter.parent.name
  files = sorted(chapter.iterdir())
  if not files:
    return report.skip(rel, 'empty chapter folder')
  transcript_path = chapter / f'{speaker}-{chapter.name}.trans.txt'
  flacs = {p.stem: p for p in files if p.is_file() and p.suffix.lower() == '.flac'}
  report.ignored += [p.relative_to(root).as_posix() for p in files
                     if p != transcript_path and p not in flacs.values()]
  texts = {}
  if transcript_path.is_file():
    texts, problems = folder.read_transcripts(transcript_path)
    for where, problem in problems:
      report.skip(f'{rel}/{where}', problem)
  for utt_id, path in flacs.items():
    name = path.relative_to(root).as_posix()
    if utt_id not in texts:
      report.skip(name, 'no transcript' + ('' if transcript_path.is_file() else
                                           f' (no {transcript_path.name})'))
      continue
    if utt_id in seen:
      report.skip(name, f'duplicate id, first one kept ({seen[utt_id]})')
      continue
    try:
      transcript = text.normalize(texts[utt_id])
    except text.TranscriptError as e:
      report.skip(name, f'transcript does not normalise ({e})')
      continue
    if not transcript:
      report.skip(name, 'transcript is empty after normalisation')
      continue
    try:
      seconds, samples = _probe(path)
    except folder.AudioError as e:
      report.skip(name, e.reason + (f' ({e.detail})' if e.detail else ''))
      continue
    seen[utt_id] = name
    report.loaded += 1
    report.seconds += seconds
    index.append((str(path), transcript, speaker, utt_id, samples))
  for utt_id in sorted(set(texts) - set(flacs)):
    report.skip(f'{transcript_path.relative_to(root).as_posix()} ({utt_id})',
                'transcript without audio')


class LibriSpeechDir:
  """Random access over an index of (path, normalised transcript, speaker, id, samples at
  16 kHz); `src[i]` reads its FLAC then, and returns {'audio': int16 16 kHz mono, 'transcript',
  'voice', 'domain', 'id'}; `src.meta(i)` is read from the index alone (a lazy
  `batching.Dataset` buckets by it)."""

  def __init__(self, index: list):
    self._index = index

  def __len__(self) -> int:
    return len(self._index)

  @property
  def ids(self) -> list[str]:
    """The utterance ids in order, read from the index alone."""
    return [entry[3] for entry in self._index]

  @property
  def transcripts(self) -> list[str]:
    return [entry[1] for entry in self._index]

  def meta(self, index: int) -> dict:
    _, transcript, _, utt_id, samples = self._index[index]
    return {'id': utt_id, 'transcript': transcript, 'samples': samples}

  def __getitem__(self, index: int) -> dict:
    if not -len(self) <= index < len(self):
      raise IndexError(f'index {index} out of range for {len(self)} examples')
    path, transcript, speaker, utt_id, _ = self._index[index % len(self)]
    try:
      audio = folder.read_audio(path)        # any rate or channel count: 16 kHz mono float
    except folder.AudioError as e:
      raise batching.UnreadableExample(path, e.reason + ' (found when read)', str(e)) from None
    # libsndfile reads a 16-bit sample v as v / 32768, so scaling by 32768 returns LibriSpeech's
    # samples exactly (augment.to_int16 scales by 32767: one step off above half scale).
    audio = np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)
    return {'audio': audio, 'transcript': transcript, 'voice': f'librispeech/{speaker}',
            'domain': 'librispeech', 'id': utt_id}

  def __iter__(self):
    for i in range(len(self)):
      yield self[i]


def load(root, splits: str) -> tuple[LibriSpeechDir, folder.FolderReport]:
  """The utterances of `splits` ('+'-joined official names) under `root`, in path order, and
  the report of what was left out. Reads no audio."""
  root = pathlib.Path(root)
  report = folder.FolderReport(str(root / splits))
  index, seen = [], {}
  for split_dir in split_dirs(root, splits):
    before = len(index)
    for speaker in sorted(split_dir.iterdir()):
      if not speaker.is_dir():
        report.ignored.append(speaker.relative_to(root).as_posix())
        continue
      chapters = sorted(speaker.iterdir())
      if not chapters:
        report.skip(speaker.relative_to(root).as_posix(), 'empty speaker folder')
      for chapter in chapters:
        if chapter.is_dir():
          _index_chapter(chapter, root, report, index, seen)
        else:
          report.ignored.append(chapter.relative_to(root).as_posix())
    if len(index) == before:
      report.skip(split_dir.name, 'no usable recordings in the split folder')
  if not index:
    raise FolderError(f'{root / splits}: no usable recordings. '
                      + report.summary().replace('\n', '; '))
  return LibriSpeechDir(index), report


def main(argv=None) -> int:
  import argparse  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(description='Index LibriSpeech folders and report problems.')
  parser.add_argument('root')
  parser.add_argument('splits', help="e.g. dev-clean or train-clean-100+train-clean-360")
  args = parser.parse_args(argv)
  try:
    _, report = load(args.root, args.splits)
  except FolderError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(report.summary())
  return 0


if __name__ == '__main__':
  sys.exit(main())
