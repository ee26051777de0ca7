"""Any folder of recordings as examples: WAV/FLAC at any rate, mono or stereo, 16/24-bit or float.

  examples, report = load_folder('recordings/', 'recordings/transcripts.tsv')
  print(report.summary())

Transcripts: a TSV file (`id<TAB>text`, optional `id<TAB>text` header) or a Kaldi `text` file
(`id text...`); ids are the audio path relative to the folder without its extension, or the bare
file stem. Audio is down-mixed and resampled to 16 kHz mono int16. Every file that cannot be used
(unreadable, empty, truncated, silent, NaN, no transcript, a transcript that does not normalise)
and every transcript without audio is reported by name and counted in `report`; a transcript file
that is not UTF-8, a missing folder, or a folder where nothing is usable raises a `ValueError`
with a one-line message.

  python -m asr.data.folder DIR [--transcripts=FILE]     # prints the report and hours
"""
import collections
import dataclasses
import os
import pathlib
import re
import sys

import numpy as np
import soundfile as sf

from asr import text
from asr.data.voice_assistant import augment

SAMPLE_RATE = augment.SAMPLE_RATE
AUDIO_EXTENSIONS = ('.wav', '.flac')
TRANSCRIPT_NAMES = ('transcripts.tsv', 'transcript.tsv', 'text')
_UNKNOWN_DATA_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF - 8)


class AudioError(ValueError):
  """A recording that cannot be used; the one-line message names the file. `reason` is short."""

  def __init__(self, path, reason: str, detail: str = ''):
    self.path = str(path)
    self.reason = reason
    self.detail = detail
    super().__init__(f'{path}: {reason}' + (f' ({detail})' if detail else ''))


class FolderError(ValueError):
  """A folder or transcript file that cannot be used at all."""


def _truncation(info) -> str | None:
  """'header says N bytes, file holds M' for a WAV cut short, from libsndfile's log."""
  match = re.search(r'^data\s*:\s*(\d+)\s*\(should be (\d+)\)', info.extra_info or '', re.M)
  if not match:
    return None
  declared, actual = int(match.group(1)), int(match.group(2))
  if declared in _UNKNOWN_DATA_SIZES or actual >= declared:
    return None        # streamed WAVs leave the size unset: not a truncation
  return f'header says {declared} data bytes, file holds {actual}'


_SOUNDFILE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError)


def _unreadable(path: str, e: Exception) -> AudioError:
  detail = str(e).replace(path, '').replace("Error opening '':", '').strip(" :'")
  return AudioError(path, 'unreadable audio', detail or type(e).__name__)


def read_info(path):
  """soundfile's header info of a WAV/FLAC file, without decoding its audio; raises
  `AudioError` naming the file."""
  path = str(path)
  try:
    size = os.path.getsize(path)
  except OSError as e:
    raise AudioError(path, 'unreadable', e.strerror or str(e)) from None
  if size == 0:
    raise AudioError(path, 'empty file', '0 bytes')
  try:
    return sf.info(path)
  except _SOUNDFILE_ERRORS as e:
    raise _unreadable(path, e) from None


def read_audio(path) -> np.ndarray:
  """float32 mono 16 kHz samples in [-1, 1] of a WAV/FLAC file; raises `AudioError` naming
  the file."""
  path = str(path)
  info = read_info(path)
  try:
    audio, sr = sf.read(path, dtype='float32', always_2d=True)
  except _SOUNDFILE_ERRORS as e:
    raise _unreadable(path, e) from None
  truncated = _truncation(info)
  if truncated:
    raise AudioError(path, 'truncated', truncated)
  if audio.shape[0] == 0:
    raise AudioError(path, 'no samples', f'{info.format} {info.subtype}, 0 frames')
  if not np.all(np.isfinite(audio)):
    raise AudioError(path, 'NaN or infinite samples')
  if not np.any(audio):
    raise AudioError(path, 'all samples are zero')
  # Clipped to [-1, 1]: float files may go past full scale, and resampling overshoots a little;
  # callers scale by 32767 into int16.
  return np.clip(augment.resample(audio.mean(axis=1), int(sr), SAMPLE_RATE), -1.0, 1.0)


def _decode_transcript_file(path: pathlib.Path) -> str:
  raw = path.read_bytes()
  try:
    content = raw.decode('utf-8')
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b'\n') + 1
    raise FolderError(f'{path}: not UTF-8 (byte 0x{raw[e.start]:02x} on line {line}); save it '
                      'as UTF-8') from None
  return content.lstrip('\ufeff')


def read_transcripts(path) -> tuple[dict[str, str], list[tuple[str, str]]]:
  """({id: raw text}, [(where, problem)]) from a TSV or Kaldi `text` file."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FolderError(f'{path}: transcript file not found')
  lines = _decode_transcript_file(path).splitlines()
  kaldi = path.name == 'text' or not any('\t' in line for line in lines)
  transcripts, problems = {}, []
  for number, line in enumerate(lines, 1):
    where = f'{path.name}:{number}'
    if not line.strip():
      continue
    if number == 1 and not kaldi and line.strip().lower().replace(' ', '') in ('id\ttext',
                                                                               'id\ttranscript'):
      continue
    parts = line.split('\t', 1) if not kaldi else line.strip().split(None, 1)
    utt_id = parts[0].strip()
    utt_text = parts[1].strip() if len(parts) > 1 else ''
    for ext in AUDIO_EXTENSIONS:       # ids written as file names
      if utt_id.lower().endswith(ext):
        utt_id = utt_id[:-len(ext)]
    if not utt_id:
      problems.append((where, 'line without an id'))
    elif not utt_text:
      problems.append((f'{where} ({utt_id})', 'empty transcript'))
    elif utt_id in transcripts:
      problems.append((f'{where} ({utt_id})', 'duplicate id, first one kept'))
    else:
      transcripts[utt_id] = utt_text
  return transcripts, problems


@dataclasses.dataclass
class FolderReport:
  """What was loaded, and every file or line that was not, with the reason."""
  audio_dir: str
  transcripts: str | None = None
  loaded: int = 0
  seconds: float = 0.0
  skipped: list = dataclasses.field(default_factory=list)    # [(name, reason)]
  ignored: list = dataclasses.field(default_factory=list)    # files that are not .wav/.flac

  def skip(self, name: str, reason: str) -> None:
    self.skipped.append((name, reason))

  def counts(self) -> collections.Counter:
    return collections.Counter(reason.split(' (')[0] for _, reason in self.skipped)

  def summary(self) -> str:
    duration = (f'{self.seconds / 3600:.2f} h' if self.seconds >= 360 else
                f'{self.seconds:.1f} s')
    lines = [f'{self.audio_dir}: loaded {self.loaded} recordings ({duration}), '
             f'skipped {len(self.skipped)}'
             + (f', ignored {len(self.ignored)} non-audio files' if self.ignored else '')]
    for reason, count in sorted(self.counts().items()):
      lines.append(f'  {count} x {reason}')
    for name, reason in self.skipped:
      lines.append(f'  skipped {name}: {reason}')
    return '\n'.join(lines)


def _find_transcript_file(root: pathlib.Path) -> pathlib.Path | None:
  for name in TRANSCRIPT_NAMES:
    if (root / name).is_file():
      return root / name
  return None


def load_folder(audio_dir: str, transcripts: str | None = None, *,
                require_transcripts: bool = True) -> tuple[list[dict], FolderReport]:
  """Examples (audio int16 16 kHz, transcript, voice='folder', domain='folder', id) and a report.

  `transcripts`: a TSV/Kaldi file; by default `transcripts.tsv` or `text` inside `audio_dir`.
  With `require_transcripts=False` (transcribing new audio) recordings need no transcript and
  get transcript ''.
  """
  root = pathlib.Path(audio_dir)
  if not root.is_dir():
    raise FolderError(f'{audio_dir}: not a folder')
  transcript_path = pathlib.Path(transcripts) if transcripts else _find_transcript_file(root)
  if transcript_path is None and require_transcripts:
    raise FolderError(f'{audio_dir}: no transcript file; pass one (TSV id<TAB>text or Kaldi '
                      f'`text`) or put {" / ".join(TRANSCRIPT_NAMES)} in the folder')
  report = FolderReport(str(audio_dir), str(transcript_path) if transcript_path else None)
  texts, problems = (read_transcripts(transcript_path) if transcript_path else ({}, []))
  for where, problem in problems:
    report.skip(where, problem)

  audio_files, seen_ids = [], set()
  for path in sorted(p for p in root.rglob('*') if p.is_file()):
    if transcript_path is not None and path.resolve() == transcript_path.resolve():
      continue
    if path.suffix.lower() in AUDIO_EXTENSIONS:
      audio_files.append(path)
    else:
      report.ignored.append(str(path.relative_to(root)))
  if not audio_files:
    raise FolderError(f'{audio_dir}: no {"/".join(AUDIO_EXTENSIONS)} files')
  stems = collections.Counter(p.stem for p in audio_files)

  examples = []
  for path in audio_files:
    rel = path.relative_to(root)
    utt_id = rel.with_suffix('').as_posix()
    key = utt_id if utt_id in texts else (path.stem if stems[path.stem] == 1 and
                                          path.stem in texts else None)
    if utt_id in seen_ids:
      report.skip(str(rel), 'duplicate id (same name, another extension)')
      continue
    seen_ids.add(utt_id)
    if key is not None:
      seen_ids.add(key)
    transcript = ''
    if key is None and require_transcripts:
      report.skip(str(rel), 'no transcript')
      continue
    if key is not None:
      try:
        transcript = text.normalize(texts[key])
      except text.TranscriptError as e:
        report.skip(str(rel), f'transcript does not normalise ({e})')
        continue
      if not transcript and require_transcripts:
        report.skip(str(rel), 'transcript is empty after normalisation')
        continue
    try:
      audio = read_audio(path)
    except AudioError as e:
      report.skip(str(rel), e.reason + (f' ({e.detail})' if e.detail else ''))
      continue
    report.loaded += 1
    report.seconds += len(audio) / SAMPLE_RATE
    examples.append({'audio': augment.to_int16(audio),
                     'transcript': transcript, 'voice': 'folder', 'domain': 'folder',
                     'id': utt_id})
  for utt_id in sorted(set(texts) - seen_ids):
    report.skip(utt_id, 'transcript without audio')
  if not examples:
    raise FolderError(f'{audio_dir}: no usable recordings. ' + report.summary().replace('\n',
                                                                                         '; '))
  return examples, report


def main(argv=None) -> int:
  import argparse
  parser = argparse.ArgumentParser(description='Check a folder of recordings.')
  parser.add_argument('audio_dir')
  parser.add_argument('--transcripts', default=None)
  parser.add_argument('--no_transcripts', action='store_true',
                      help='recordings to transcribe: no transcript file needed')
  args = parser.parse_args(argv)
  try:
    _, report = load_folder(args.audio_dir, args.transcripts,
                            require_transcripts=not args.no_transcripts)
  except FolderError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(report.summary())
  return 0


if __name__ == '__main__':
  sys.exit(main())
