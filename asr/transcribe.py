"""Transcription as a user sees it, for any model: word times from the decoder's emission
frames, TSV / JSON-lines output, streaming audio in pieces, progress bars.

Word times. The greedy decoder (and the beam search) records the encoder frame at which each
label was emitted. A word is a run of characters between spaces; it starts at the start of its
first character's frame and ends at the end of its last character's frame:

    start_s = first_frame * frame_seconds,   end_s = (last_frame + 1) * frame_seconds

so a word emitted within one frame still lasts one frame (and a word whose first character
comes in the frame of the previous word's last overlaps it by that frame). `frame_seconds` is the encoder's
frame duration (frontend hop x stride: 30 ms for 10 ms hops stacked by 3). An RNN-T emits a label
once it has heard enough of it, so these times lag the audio by the model's emission delay.

Streaming. `StreamFeaturizer` turns audio arriving in pieces into blocks of encoder frames with
exactly the values the whole recording would give (each frame is computed from the same samples,
the one sample of pre-emphasis context included); `Stream` runs a model's block step on them
and keeps the hypothesis so far. The model side (encoder state, decoder state) is the step's
business, so that this module knows no encoder.
"""
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from asr import files
from asr import frontend
from asr import text as text_lib

SAMPLE_RATE = 16000
FORMATS = ('text', 'tsv', 'jsonl')
TSV_HEADER = 'path\tstart_s\tend_s\ttext\twords'


class TranscribeError(ValueError):
  """Arguments or input audio that transcription cannot use."""


# --- word times --------------------------------------------------------------------------------

def words_with_times(token_ids, frames, frame_seconds: float,
                     tokenizer=None) -> tuple[str, list[dict]]:
  """(text, [{'word', 'start_s', 'end_s'}]) of a decoded label sequence and the encoder frame
  of each label (see the module docstring). Leading, trailing and repeated spaces make no
  empty words. `tokenizer`: the model's (characters by default); a word piece that begins with
  a space starts a word."""
  tokenizer = tokenizer or text_lib.CharTokenizer()
  if len(token_ids) != len(frames):
    raise TranscribeError(f'{len(token_ids)} labels but {len(frames)} emission frames')
  words, current = [], None
  for token, frame in zip(token_ids, frames):
    raw = tokenizer.token_text(token)
    if raw.startswith(' ') or not raw:
      current = None
    piece = raw.strip()
    if not piece:
      continue
    if current is None:
      current = {'word': '', 'first': int(frame), 'last': int(frame)}
      words.append(current)
    current['word'] += piece
    current['last'] = int(frame)
    if raw.endswith(' '):
      current = None
  timed = [{'word': w['word'], 'start_s': round(w['first'] * frame_seconds, 3),
            'end_s': round((w['last'] + 1) * frame_seconds, 3)} for w in words]
  return tokenizer.decode(token_ids), timed


# --- output ------------------------------------------------------------------------------------

def output_format(path: str, fmt: str = '') -> str:
  """The format of `--output=path` (`--format` wins over the extension)."""
  if fmt:
    if fmt not in FORMATS:
      raise TranscribeError(f'--format={fmt!r} is not one of {FORMATS}')
    return fmt
  if not path:
    return 'text'
  ext = os.path.splitext(path)[1].lower()
  if ext in ('.tsv', '.jsonl'):
    return ext[1:]
  raise TranscribeError(f'--output={path}: cannot tell the format from the extension {ext!r}; '
                        'name it .tsv or .jsonl, or pass --format=tsv|jsonl')


class Output:
  """Collects results and writes them to `path` in one atomic replace on `close` (a reader
  never sees half a file; an interrupted run leaves the previous file, not a truncated one).
  Without a path, 'text' results are printed as `path<TAB>text` as they come."""

  def __init__(self, path: str = '', fmt: str = ''):
    self.path, self.fmt = path, output_format(path, fmt)
    self.lines = [TSV_HEADER] if self.fmt == 'tsv' else []

  def add(self, path: str, text: str, words: list[dict], duration_s: float):
    if self.fmt == 'jsonl':
      line = json.dumps({'path': path, 'text': text, 'words': words,
                         'duration_s': round(duration_s, 3)})
    elif self.fmt == 'tsv':
      # A tab or newline in a file name would shift the columns: refused, not mangled.
      if any(c in path for c in '\t\n\r'):
        raise TranscribeError(f'{path!r}: a tab or newline in the file name cannot go in a TSV; '
                              'use --format=jsonl')
      cells = ' '.join(f'{w["word"]}:{w["start_s"]:.3f}-{w["end_s"]:.3f}' for w in words)
      line = f'{path}\t0.000\t{duration_s:.3f}\t{text}\t{cells}'
    else:
      line = f'{path}\t{text}'
    if self.path:
      self.lines.append(line)
    else:
      print(line, flush=True)

  def close(self):
    if not self.path:
      return
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    files.atomic_write(self.path, ''.join(line + '\n' for line in self.lines).encode('utf-8'))


# --- progress ----------------------------------------------------------------------------------

def progress(iterable=None, total=None, desc: str = '', enabled: bool = True, unit: str = 'it'):
  """A tqdm bar on stderr, shown only when `enabled` and stderr is a terminal (a log file or a
  pipe gets no carriage-return garbage)."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  show = enabled and sys.stderr.isatty()
  return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=not show,
              leave=False, dynamic_ncols=True)


# --- streaming audio ---------------------------------------------------------------------------

def play_file(samples: np.ndarray, chunk_samples: int, realtime: bool = False,
              clock=time.monotonic, sleep=time.sleep):
  """Yields int16 chunks of a recording as a microphone would deliver them; with `realtime`,
  chunk i is released only once (i + 1) chunks of audio time have passed."""
  start = clock()
  for begin in range(0, samples.size, chunk_samples):
    chunk = samples[begin:begin + chunk_samples]
    if realtime:
      wait = start + (begin + chunk.size) / SAMPLE_RATE - clock()
      if wait > 0:
        sleep(wait)
    yield chunk


def read_pcm_stream(stream, chunk_samples: int, name: str = 'stdin'):
  """Yields int16 chunks from a binary stream of raw 16 kHz mono int16 (little-endian), or of a
  WAV file with that format (told by its RIFF header), as the bytes arrive."""
  head = _read_exactly(stream, 12)
  if head[:4] == b'RIFF':
    if head[8:12] != b'WAVE':
      raise TranscribeError(f'{name}: a RIFF stream that is not WAVE')
    _skip_to_wav_data(stream, name)
    pending = b''
  else:
    pending = head
  chunk_bytes = 2 * chunk_samples
  while True:
    data = stream.read(chunk_bytes - len(pending))
    if not data:
      break
    pending += data
    if len(pending) >= chunk_bytes:
      yield np.frombuffer(pending[:chunk_bytes], '<i2')
      pending = pending[chunk_bytes:]
  usable = len(pending) - len(pending) % 2
  if usable:
    yield np.frombuffer(pending[:usable], '<i2')


def _read_exactly(stream, n: int) -> bytes:
  out = b''
  while len(out) < n:
    data = stream.read(n - len(out))
    if not data:
      break
    out += data
  return out


def _skip_to_wav_data(stream, name: str):
  """Reads the WAV chunks up to 'data'; refuses any format but 16 kHz mono 16-bit PCM, since a
  stream cannot be resampled before it has ended."""
  fmt = None
  while True:
    header = _read_exactly(stream, 8)
    if len(header) < 8:
      raise TranscribeError(f'{name}: WAV stream ended before its data chunk')
    kind, size = header[:4], int.from_bytes(header[4:], 'little')
    if kind == b'data':
      break
    body = _read_exactly(stream, size + size % 2)
    if kind == b'fmt ':
      fmt = body
  if fmt is None:
    raise TranscribeError(f'{name}: WAV stream without a fmt chunk before its data')
  tag, channels, rate = (int.from_bytes(fmt[0:2], 'little'), int.from_bytes(fmt[2:4], 'little'),
                         int.from_bytes(fmt[4:8], 'little'))
  bits = int.from_bytes(fmt[14:16], 'little')
  if (tag, channels, rate, bits) != (1, 1, SAMPLE_RATE, 16):
    raise TranscribeError(f'{name}: WAV stream is format {tag}, {channels} channel(s), {rate} Hz, '
                          f'{bits} bits; streaming reads 16 kHz mono 16-bit PCM (convert it, '
                          'e.g. sox IN -r 16000 -c 1 -b 16 OUT.wav, or transcribe the file '
                          'without --stream)')


class StreamFeaturizer:
  """Audio pieces -> blocks of `block_frames` encoder frames ([1, F, D] features, [1, F]
  paddings, the index of the block's first frame), each frame equal to the one the whole recording gives.

  Encoder frame j stacks log-mel frames j*stride .. j*stride+stack-1; log-mel frame m covers
  samples [m*hop, m*hop+win) after pre-emphasis, which also reads sample m*hop-1. A block is
  computed from the samples its frames need plus one hop before them (zeros before the start,
  which is what pre-emphasis assumes there), and that extra frame is dropped. Every block has
  the same shape: one compilation. A frame is emitted once all its samples have arrived, the
  rule the offline frontend uses for the frames of a padded recording.
  """

  def __init__(self, frontend_cfg, stats, block_frames: int):
    self.cfg, self.block = frontend_cfg, int(block_frames)
    if self.block < 1:
      raise TranscribeError(f'block_frames={block_frames} must be >= 1')
    self.win = int(round(SAMPLE_RATE * frontend_cfg.window_ms / 1000.0))
    self.hop = int(round(SAMPLE_RATE * frontend_cfg.hop_ms / 1000.0))
    self.stack, self.stride = frontend_cfg.stack, frontend_cfg.stride
    self.log_mel_frames = (self.block - 1) * self.stride + self.stack
    self.window = self.log_mel_frames * self.hop + self.win
    self.stats = {k: jnp.asarray(v) for k, v in stats.items()}
    self.audio = np.zeros(0, np.int16)
    self.offset = 0          # global index of self.audio[0]
    self.done = 0            # encoder frames emitted
    # Causal mean normalisation: (sum, count) of the log-mel frames before the next block.
    self.cmn_state = (jnp.zeros((1, frontend_cfg.num_mels)), jnp.zeros((1,)))
    self._featurize = jax.jit(self._featurize_impl)

  def _featurize_impl(self, window, stats, cmn_state, valid):
    cfg = self.cfg
    feats, pads = frontend.log_mel(window[None], jnp.zeros((1, window.size), jnp.float32),
                                   num_mels=cfg.num_mels, window_ms=cfg.window_ms,
                                   hop_ms=cfg.hop_ms)
    feats, pads = feats[:, 1:], pads[:, 1:]          # the pre-emphasis context frame
    feats = frontend.normalize(feats, pads, stats['mean'], stats['std'])
    if cfg.causal_cmn:
      # The block's first `valid` encoder frames start the next block's frames at log-mel
      # frame valid * stride: only those enter the carried sums (with stack > stride the
      # frames after them are read again by the next block).
      new = (jnp.arange(feats.shape[1]) < valid * cfg.stride).astype(feats.dtype)[None]
      after = (cmn_state[0] + jnp.sum(feats * new[..., None], axis=1),
               cmn_state[1] + jnp.sum(new, axis=1))
      feats, _ = frontend.causal_mean_norm(feats, pads, cfg.cmn_prior_frames, cmn_state)
      cmn_state = after
    return frontend.stack_frames(feats, pads, stack=cfg.stack, stride=cfg.stride)[0], cmn_state

  def available(self) -> int:
    """Encoder frames whose samples have all arrived."""
    total = self.offset + self.audio.size
    if total < self.win:
      return 0
    log_mel = 1 + (total - self.win) // self.hop
    return 0 if log_mel < self.stack else 1 + (log_mel - self.stack) // self.stride

  def push(self, samples) -> list[tuple[jax.Array, np.ndarray]]:
    """Adds audio (int16); returns the blocks now complete."""
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
      raise TranscribeError(f'streamed audio must be int16, got {samples.dtype}')
    self.audio = np.concatenate([self.audio, samples])
    blocks = []
    while self.available() - self.done >= self.block:
      blocks.append(self._next(self.block))
    return blocks

  def flush(self) -> list[tuple[jax.Array, np.ndarray]]:
    """At the end of the stream: the frames left, in one padded block (or none)."""
    left = self.available() - self.done
    return [self._next(left)] if left > 0 else []

  def _next(self, valid: int):
    begin = (self.done * self.stride - 1) * self.hop     # one hop of pre-emphasis context
    window = np.zeros(self.window, np.int16)
    lo = max(begin, self.offset)
    piece = self.audio[lo - self.offset:lo - self.offset + self.window - (lo - begin)]
    window[lo - begin:lo - begin + piece.size] = piece
    feats, self.cmn_state = self._featurize(jnp.asarray(window), self.stats, self.cmn_state,
                                            jnp.int32(valid))
    pads = np.zeros((1, self.block), np.float32)
    pads[0, valid:] = 1.0
    first = self.done
    self.done += valid
    # Samples before the next block's context are never read again.
    keep_from = max((self.done * self.stride - 1) * self.hop, 0)
    if keep_from > self.offset:
      self.audio = self.audio[keep_from - self.offset:]
      self.offset = keep_from
    return feats, pads, first


class Stream:
  """The hypothesis of a stream so far. `step(feats, paddings, carry) -> (tokens [F, S],
  token_paddings [F, S], info, carry)` is the model's: it encodes a block of frames from the
  carried encoder and decoder state and decodes it greedily, S labels at most per frame; `info`
  is whatever the model reports per block (an AmNet: its routing and simulated backlog)."""

  def __init__(self, featurizer: StreamFeaturizer, step, carry, frame_seconds: float,
               tokenizer=None):
    self.featurizer, self.step, self.carry = featurizer, step, carry
    self.frame_seconds = frame_seconds
    self.tokenizer = tokenizer or text_lib.CharTokenizer()
    self.tokens, self.frames = [], []
    self.samples = 0

  def _run(self, blocks) -> list[dict]:
    infos = []
    for feats, pads, first in blocks:
      tokens, token_pads, info, self.carry = self.step(feats, jnp.asarray(pads), self.carry)
      tokens, token_pads = np.asarray(tokens), np.asarray(token_pads)
      for f in range(tokens.shape[0]):
        emitted = tokens[f][token_pads[f] < 0.5]
        self.tokens += [int(t) for t in emitted]
        self.frames += [first + f] * emitted.size
      infos.append(jax.device_get(info))
    return infos

  def push(self, samples) -> list[dict]:
    """Feeds audio; returns the `info` of every block decoded (none until a block is full)."""
    self.samples += np.asarray(samples).size
    return self._run(self.featurizer.push(samples))

  def finish(self) -> list[dict]:
    return self._run(self.featurizer.flush())

  def text(self) -> str:
    return self.tokenizer.decode(self.tokens)

  def words(self) -> tuple[str, list[dict]]:
    return words_with_times(self.tokens, self.frames, self.frame_seconds, self.tokenizer)
