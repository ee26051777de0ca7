"""`--mode=transcribe`: recordings to text with word times, offline or streamed.

Offline, each file is decoded whole (`asr.evaluate.Evaluator`, greedy or beam search). Streamed
(`--stream`, or `--audio=-` for stdin), the audio is fed in chunks to the encoder's frame-by-frame
path (`stream_chunk` of the encoder in amortized/encoder.py: only the routed branch runs per
frame) and to the greedy decoder, and the hypothesis so far is shown on stderr as it grows;
for an AmNet, with each branch's share of the frames so far and the simulated device's backlog
(amortized/latency.py). The encoder is unidirectional, so the final streamed text is the
offline one. Results go to stdout as `path<TAB>text`, or to `--output` as TSV or JSON lines
with word times (asr/transcribe.py).
"""
import functools
import os
import sys

from absl import logging
import jax
import numpy as np

from amortized import encoder as amnet
from asr import evaluate as evaluate_lib
from asr import features
from asr import text_pieces
from asr import train as train_lib
from asr import transcribe as transcribe_lib
from asr.data import batching
from asr.rnnt import decode
from experiments import data as data_lib
from experiments import models

STDIN = '-'


def audio_paths(audio: str) -> list[str]:
  if not audio:
    raise ValueError('--audio=FILE_OR_FOLDER (or - for stdin) is required for --mode=transcribe')
  if audio == STDIN:
    return [STDIN]
  if os.path.isdir(audio):
    return [os.path.join(audio, p) for p in sorted(os.listdir(audio))]
  if not os.path.exists(audio):
    raise FileNotFoundError(f'--audio={audio}: no such file or folder')
  return [audio]


def run(cfg, workdir: str, audio: str = '', output: str = '', fmt: str = '',
        stream: bool = False, realtime: bool = False, chunk_ms: float = 300.0,
        progress: bool = True):
  """Transcribes a file, every file of a folder, or stdin; see the module docstring."""
  paths = audio_paths(audio)
  out = transcribe_lib.Output(output, fmt)
  stream = stream or audio == STDIN
  if stream and cfg.eval.beam_width > 1:
    raise ValueError(f'--stream decodes greedily; config.eval.beam_width={cfg.eval.beam_width} '
                     'is for offline transcription')
  if realtime and not stream:
    raise ValueError('--realtime plays the audio in real time: it needs --stream')
  model = models.build_model(cfg)
  buckets = data_lib.buckets(cfg)
  variables, stats = train_lib.load_trained(cfg, workdir, model, batching.Dataset([], buckets))
  skipped = batching.Skipped()
  # Streamed, the partial line on stderr already shows the progress; a bar would overwrite it.
  bar = transcribe_lib.progress(total=len(paths), desc='transcribe', unit='file',
                                enabled=progress and len(paths) > 1 and not stream)
  if stream:
    streamer = Streamer(cfg, model, variables, stats, chunk_ms)
    for path in paths:
      result = streamer.transcribe(path, realtime, skipped)
      if result is not None:
        out.add(path, *result)
      bar.update(1)
  else:
    evaluator = evaluate_lib.Evaluator(model, cfg)
    for path in paths:
      result = _offline(evaluator, variables, stats, buckets, path, skipped)
      if result is not None:
        out.add(path, *result)
      bar.update(1)
  bar.close()
  out.close()
  if output:
    print(f'wrote {len(out.lines) - (out.fmt == "tsv")} transcriptions to {output}')
  if skipped.count:
    logging.warning(skipped.summary('transcribe'))
    print(skipped.summary('transcribe'))


def _read(path: str, skipped) -> np.ndarray | None:
  from asr.data import folder  # pylint: disable=g-import-not-at-top
  try:
    samples = folder.read_audio(path)
  except ValueError as e:
    skipped.add(str(e), path)
    return None
  return (samples * 32767).astype('int16')


def _offline(evaluator, variables, stats, buckets, path, skipped):
  """(text, words, duration_s) of one file, or None if it is skipped."""
  pcm = _read(path, skipped)
  if pcm is None:
    return None
  # A file longer than every bucket is padded to whole seconds (one compile per length):
  # the encoder is unidirectional, so this equals streaming it.
  dataset = batching.Dataset([{'audio': pcm, 'transcript': 'x', 'id': path}], buckets,
                             keep_long=True)
  if not len(dataset):
    skipped.add(dataset.skipped.summary(path), path)
    return None
  batch = dataset.batch([0], int(dataset.bucket[0]), 1)
  rows, _, _ = evaluator.decode_batch(variables, stats, batch)
  tokens, frames = rows[0]
  text, words = transcribe_lib.words_with_times(
      tokens, frames, features.frame_seconds(evaluator.cfg.frontend), evaluator.tokenizer)
  return text, words, pcm.size / transcribe_lib.SAMPLE_RATE


class Streamer:
  """The model's block step for `asr.transcribe.Stream`: the encoder's `stream_chunk` with its
  carried state, the joint's encoder projection, and greedy decoding of the block's frames from
  the carried decoder state; compiled once (every block has the same shape)."""

  def __init__(self, cfg, model, variables, stats, chunk_ms: float):
    if not chunk_ms > 0:
      raise ValueError(f'--chunk_ms={chunk_ms} must be > 0')
    self.cfg, self.model, self.variables, self.stats = cfg, model, variables, stats
    self.frame_seconds = features.frame_seconds(cfg.frontend)
    self.block_frames = max(1, int(round(chunk_ms / 1000.0 / self.frame_seconds)))
    self.chunk_samples = max(1, int(round(chunk_ms / 1000.0 * transcribe_lib.SAMPLE_RATE)))
    self.branches = [b.name for b in amnet.parse_branches(cfg.model.encoder.branches)]
    self.enc_vars = {k: v['encoder'] for k, v in variables.items() if 'encoder' in v}
    # Host-side, once: sparse branches in the grouped format streaming runs fastest.
    self.weights = model.encoder.apply(self.enc_vars, method='stream_weights')
    self._step = jax.jit(self._step_impl)

  def _step_impl(self, variables, enc_vars, weights, feats, pads, carry):
    enc_carry, dec_carry = carry
    ys, info, enc_carry = self.model.encoder.apply(enc_vars, feats, pads, enc_carry, weights,
                                                   method='stream_chunk')
    enc = self.model.apply(variables, ys, method=lambda m, y: m.joint.enc_proj(y))
    pred_step = functools.partial(self.model.apply, variables, method='pred_step')
    joint = functools.partial(self.model.apply, variables, method='joint_step')
    dec_carry, tokens, token_pads = decode.greedy_frames(
        dec_carry, enc, pads, pred_step, joint, self.cfg.eval.max_symbols_per_frame)
    return tokens[0], token_pads[0], dict(info, valid=pads[0] < 0.5), (enc_carry, dec_carry)

  def new_stream(self) -> transcribe_lib.Stream:
    enc_carry = self.model.encoder.apply(self.enc_vars, method='stream_init')
    pred_step = functools.partial(self.model.apply, self.variables, method='pred_step')
    init = self.model.apply(self.variables, 1, method='initial_pred_state')
    dec_carry = decode.greedy_init(init, pred_step)
    step = functools.partial(self._step, self.variables, self.enc_vars, self.weights)
    featurizer = transcribe_lib.StreamFeaturizer(self.cfg.frontend, self.stats,
                                                 self.block_frames)
    return transcribe_lib.Stream(featurizer, step, (enc_carry, dec_carry), self.frame_seconds,
                                 text_pieces.from_config(self.cfg))

  def chunks(self, path: str, realtime: bool, skipped):
    if path == STDIN:
      return transcribe_lib.read_pcm_stream(sys.stdin.buffer, self.chunk_samples)
    pcm = _read(path, skipped)
    if pcm is None:
      return None
    return transcribe_lib.play_file(pcm, self.chunk_samples, realtime)

  def transcribe(self, path: str, realtime: bool = False, skipped=None, show=None):
    """(text, words, duration_s) of one recording streamed chunk by chunk (None if skipped),
    the hypothesis shown as it grows (`show(line)`; default: stderr)."""
    skipped = skipped if skipped is not None else batching.Skipped()
    chunks = self.chunks(path, realtime, skipped)
    if chunks is None:
      return None
    show = show or PartialLine()
    stream, routing = self.new_stream(), Routing(self.branches)
    shown = ''
    for chunk in chunks:
      infos = stream.push(chunk)
      for info in infos:
        routing.add(info)
      line = routing.describe() + stream.text()
      if infos and line != shown:
        show(line)
        shown = line
    for info in stream.finish():
      routing.add(info)
    show(routing.describe() + stream.text(), final=True)
    text, words = stream.words()
    return text, words, stream.samples / transcribe_lib.SAMPLE_RATE


class Routing:
  """An AmNet's running routing share per branch and simulated backlog, for the display; a
  single-branch model shows nothing."""

  def __init__(self, branches):
    self.branches = branches
    self.counts = np.zeros(len(branches), np.int64)
    self.backlog, self.max_backlog = 0.0, 0.0

  def add(self, info):
    backlog, route, valid = (np.asarray(info[k]) for k in ('backlog', 'route', 'valid'))
    self.counts += np.bincount(route[valid], minlength=len(self.branches))
    if valid.any():
      self.backlog = float(backlog[valid][-1])
      self.max_backlog = max(self.max_backlog, float(backlog[valid].max()))

  def describe(self) -> str:
    if len(self.branches) < 2:
      return ''
    total = max(int(self.counts.sum()), 1)
    shares = ' '.join(f'{name} {100 * n / total:.0f}%'
                      for name, n in zip(self.branches, self.counts))
    return f'[{shares} | backlog {self.backlog:.3f} s, max {self.max_backlog:.3f} s] '


class PartialLine:
  """Shows the partial hypothesis on stderr: rewritten in place on a terminal, a line per
  change otherwise (a log keeps every step)."""

  def __init__(self, stream=None):
    self.stream = stream or sys.stderr
    self.tty = self.stream.isatty()

  def __call__(self, line: str, final: bool = False):
    if self.tty:
      import shutil  # pylint: disable=g-import-not-at-top
      # A pseudo-terminal may report 0 columns: the line is then cut at a sane width.
      width = max(shutil.get_terminal_size().columns - 1, 20)
      self.stream.write('\r\033[K' + line[-width:] + ('\n' if final else ''))
    elif not final:
      self.stream.write(line + '\n')
    self.stream.flush()
