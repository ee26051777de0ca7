"""Examples -> padded batches in a small fixed set of length buckets.

jit compiles once per distinct input shape, so every batch is padded to one of a few bucket
shapes (audio samples x label length): a training run compiles as many times as it has buckets.
The batch size is either fixed or set per bucket (`bucket_batch_sizes`: about the same seconds
of audio in every batch, so short utterances come in larger batches). The label length of a
bucket is the longest label among its examples, not the bucket's capacity, so the RNN-T joint is
not computed over padding. The batch order is a pure function of (seed, epoch), and an epoch
always has the same number of batches, so the pipeline's position is just the global step:
a resumed run reads exactly the batches an uninterrupted run would.

A training set can hold its log-mel features computed once (`cache_log_mel`): batches then
carry `log_mel` [B, frames, mels] and `log_mel_paddings` instead of the audio.

Examples are dicts with `audio` (int16 or float, 16 kHz mono), `transcript` (normalised text),
`id`; any random-access source (`len`, `[i]`) of them works. Examples that fit no bucket are
skipped, counted and reported by id, except in an evaluation split (`keep_long`): there they
go to one extra bucket as long as the longest of them, which training never reads (a
unidirectional encoder gives the same outputs however long the padded batch is). An example
that a lazy source cannot read (`UnreadableExample`) is skipped and reported by its name too.

A lazy Dataset (`lazy=True`) holds only the index: a source with `meta(i)` (the example's
samples at 16 kHz, transcript and id, known without decoding, e.g. from file headers) is
bucketed from that, and `source[i]` is decoded only when a batch holding example i is built, so
its batches are the in-memory ones, read from disk. A file that turns out unreadable then is an
all-padding row (weight 0), recorded in `skipped`. It cannot hold the log-mel cache. `Prefetch`
builds the next few training batches in a background thread.
"""
import dataclasses
import math

import numpy as np

from asr import text as text_lib

SAMPLE_RATE = 16000


@dataclasses.dataclass(frozen=True)
class Buckets:
  seconds: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0)
  chars_per_second: float = 25.0   # label-length capacity of a bucket, per second of audio

  def samples(self, b: int) -> int:
    return int(round(self.seconds[b] * SAMPLE_RATE))

  def max_labels(self, b: int) -> int:
    return int(math.ceil(self.seconds[b] * self.chars_per_second))


def audio_seconds(batch: dict, log_mel_hop: float) -> float:
  """Seconds of real (unpadded) audio in a batch, from its audio or its cached log-mel."""
  if 'log_mel_paddings' in batch:
    return float((1.0 - batch['log_mel_paddings']).sum()) * log_mel_hop
  return float((1.0 - batch['audio_paddings']).sum()) / SAMPLE_RATE


def bucket_batch_sizes(buckets: Buckets, batch_size: int, batch_seconds: float = 0.0,
                       multiple: int = 1) -> tuple[int, ...]:
  """Rows per batch of each bucket: `batch_size` everywhere, or with `batch_seconds` > 0 as many
  as fill that much audio at the bucket's length, in multiples of `multiple` (the devices)."""
  if batch_seconds <= 0:
    return (batch_size,) * len(buckets.seconds)
  return tuple(max(multiple, int(batch_seconds / s) // multiple * multiple)
               for s in buckets.seconds)


class UnreadableExample(ValueError):
  """Raised by a lazy source's `src[i]` for an example it cannot read (a file damaged past its
  header shows only when decoded): `Dataset` skips it under `reason`, naming `name`."""

  def __init__(self, name: str, reason: str, message: str):
    super().__init__(message)
    self.name = name
    self.reason = reason


@dataclasses.dataclass
class Skipped:
  """Examples left out of a split, with the reason for each: printed, never silent."""
  reasons: dict[str, list[str]] = dataclasses.field(default_factory=dict)

  def add(self, reason: str, example_id: str):
    self.reasons.setdefault(reason, []).append(example_id)

  @property
  def count(self) -> int:
    return sum(len(v) for v in self.reasons.values())

  def summary(self, name: str = 'split') -> str:
    if not self.count:
      return f'{name}: no examples skipped'
    parts = [f'{len(ids)} {reason} (e.g. {", ".join(ids[:3])})'
             for reason, ids in sorted(self.reasons.items())]
    return f'{name}: skipped {self.count}: ' + '; '.join(parts)


class Dataset:
  """A split as int16 audio + token ids, assigned to length buckets; the audio held in memory,
  or (`lazy`) read from the source when a batch is built."""

  def __init__(self, source, buckets: Buckets, tokenizer=None, name: str = 'split',
               ctc_frame_seconds: float | None = None, keep_long: bool = False,
               lazy: bool = False):
    """ctc_frame_seconds: when training with CTC, the encoder frame duration; an example whose
    labels (plus a blank between repeats) outnumber its encoder frames cannot be aligned by
    CTC and is skipped. keep_long: examples longer than every bucket go to an extra bucket
    (index len(buckets.seconds)) instead of being skipped; for evaluation splits. lazy: keep
    only the index; `source.meta(i)` gives each example's samples, transcript and id without
    decoding, and `source[i]` is read when a batch holds it (see `LazyAudio`)."""
    self.buckets = buckets
    self.keep_long = keep_long
    self.long_samples = 0         # the extra bucket's length, when it has members
    self.ctc_frame_seconds = ctc_frame_seconds
    self.tokenizer = tokenizer or text_lib.CharTokenizer()
    self.name = name
    self.labels, self.ids, self.transcripts, self.bucket, sizes = [], [], [], [], []
    self.skipped = Skipped()
    self.lazy = lazy
    if lazy:
      if not hasattr(source, 'meta'):
        raise TypeError(f'{name}: a lazy Dataset needs a source with meta(i) (samples, '
                        f'transcript, id known without decoding); {type(source).__name__} has '
                        'none')
      self.audio = LazyAudio(source)
      for i in range(len(source)):
        meta = source.meta(i)
        if self._add(_as_str(meta.get('id', '?')), int(meta['samples']), meta['transcript'],
                     sizes):
          self.audio.rows.append(i)
    else:
      self.audio = []
      for i in range(len(source)):
        try:
          example = source[i]
        except UnreadableExample as e:
          self.skipped.add(e.reason, e.name)
          continue
        audio = as_int16(example['audio'])
        if self._add(_as_str(example.get('id', '?')), audio.size, example['transcript'],
                     sizes):
          self.audio.append(audio)
    self.num_samples = np.asarray(sizes, np.int64)
    self.bucket = np.asarray(self.bucket, np.int32)
    self.num_buckets = len(buckets.seconds) + (1 if self.long_samples else 0)
    longest = np.zeros(self.num_buckets, np.int64)
    for b, labels in zip(self.bucket, self.labels):
      longest[b] = max(longest[b], labels.size)
    # Rounded up to a multiple of 8: the same shape for splits of similar text.
    self.label_caps = [int(-(-max(n, 1) // 8) * 8) for n in longest]
    self.log_mel, self._log_mel_frames = None, {}

  def _add(self, example_id: str, num_samples: int, transcript, sizes: list) -> bool:
    """Assigns an example to its bucket, or records why it is skipped; True if kept."""
    transcript = _as_str(transcript)
    if num_samples == 0:
      return self.skipped.add('empty audio', example_id)
    if not transcript:
      return self.skipped.add('empty transcript', example_id)
    try:
      ids = self.tokenizer.encode(transcript)
    except text_lib.TranscriptError:
      return self.skipped.add('transcript outside the alphabet', example_id)
    if self.ctc_frame_seconds:
      frames = int(num_samples / SAMPLE_RATE / self.ctc_frame_seconds)
      repeats = sum(a == b for a, b in zip(ids, ids[1:]))
      if len(ids) + repeats > frames:
        return self.skipped.add('more CTC labels than encoder frames', example_id)
    fits = [b for b in range(len(self.buckets.seconds))
            if num_samples <= self.buckets.samples(b) and len(ids) <= self.buckets.max_labels(b)]
    if not fits and self.keep_long:
      fits = [len(self.buckets.seconds)]
      whole_seconds = -(-num_samples // SAMPLE_RATE) * SAMPLE_RATE    # shared by similar splits
      self.long_samples = max(self.long_samples, whole_seconds)
    if not fits:
      longest = self.buckets.seconds[-1]
      return self.skipped.add(f'longer than the largest bucket ({longest:g} s)', example_id)
    sizes.append(num_samples)
    self.labels.append(np.asarray(ids, np.int32))
    self.ids.append(example_id)
    self.transcripts.append(transcript)
    self.bucket.append(fits[0])
    return True

  def __len__(self):
    return len(self.ids)

  def samples(self, bucket: int) -> int:
    """Audio samples of a bucket's batches (the extra bucket: its longest example)."""
    return self.long_samples if bucket == len(self.buckets.seconds) else self.buckets.samples(
        bucket)

  def seconds(self) -> float:
    return float(self.num_samples.sum()) / SAMPLE_RATE

  def batch(self, indices, bucket: int, batch_size: int) -> dict[str, np.ndarray]:
    """Pads the examples at `indices` (at most batch_size) into one bucket-shaped batch.

    Missing rows are all-padding (weight 0): the loss ignores them and shapes stay fixed.
    """
    u = self.label_caps[bucket]
    batch = {
        'labels': np.zeros((batch_size, u), np.int32),
        'label_paddings': np.ones((batch_size, u), np.float32),
        'weights': np.zeros((batch_size,), np.float32),
    }
    if self.log_mel is not None and bucket in self._log_mel_frames:
      frames, mels = self._log_mel_frames[bucket], self.log_mel[0].shape[1]
      batch['log_mel'] = np.zeros((batch_size, frames, mels), np.float32)
      batch['log_mel_paddings'] = np.ones((batch_size, frames), np.float32)
    else:
      n = self.samples(bucket)
      batch['audio'] = np.zeros((batch_size, n), np.int16)
      batch['audio_paddings'] = np.ones((batch_size, n), np.float32)
    for row, i in enumerate(indices):
      l = self.labels[i]
      if 'log_mel' in batch:
        f = self.log_mel[i]
        batch['log_mel'][row, :len(f)] = f
        batch['log_mel_paddings'][row, :len(f)] = 0.0
      else:
        try:
          a = self.audio[i]
        except UnreadableExample as e:
          # Known only now (damaged past its header): an all-padding row, the same one at
          # every read of this step, so the batches stay a function of the step.
          if e.name not in self.skipped.reasons.get(e.reason, ()):
            self.skipped.add(e.reason, e.name)
          continue
        batch['audio'][row, :a.size] = a
        batch['audio_paddings'][row, :a.size] = 0.0
      batch['labels'][row, :l.size] = l
      batch['label_paddings'][row, :l.size] = 0.0
      batch['weights'][row] = 1.0
    return batch

  def cache_log_mel(self, log_mel_fn, batch_size: int = 32):
    """Computes every example's log-mel once: `log_mel_fn(audio, paddings) -> (feats,
    paddings)` on bucket-shaped batches (jit it: one compilation per bucket). An example's
    valid frames do not depend on how much padding follows it, so a batch built from the
    cache holds the values its audio would give."""
    if self.log_mel is not None:
      return
    if self.lazy:
      raise ValueError(f'{self.name}: the log-mel cache holds every example\'s features in '
                       'memory, which data.lazy_audio=True is there to avoid; set '
                       'data.cache_features=False')
    cache = [None] * len(self)
    for b in range(len(self.buckets.seconds)):
      members = np.flatnonzero(self.bucket == b)
      for start in range(0, len(members), batch_size):
        chunk = members[start:start + batch_size]
        batch = self.batch(chunk, b, batch_size)
        feats, pads = (np.asarray(x) for x in log_mel_fn(batch['audio'],
                                                          batch['audio_paddings']))
        self._log_mel_frames[b] = feats.shape[1]
        for row, i in enumerate(chunk):
          cache[i] = feats[row, :int((pads[row] < 0.5).sum())].copy()
    self.log_mel = cache

  def _sizes(self, batch_size) -> tuple[int, ...]:
    if isinstance(batch_size, (int, np.integer)):
      return (int(batch_size),) * len(self.buckets.seconds)
    if len(batch_size) != len(self.buckets.seconds):
      raise ValueError(f'{self.name}: {len(batch_size)} batch sizes for '
                       f'{len(self.buckets.seconds)} buckets')
    return tuple(int(n) for n in batch_size)

  def epoch_plan(self, batch_size, seed: int, epoch: int) -> list[tuple[int, np.ndarray]]:
    """The (bucket, example indices) of every batch of one epoch, in training order.
    `batch_size`: rows per batch, one for all buckets or one per bucket."""
    sizes = self._sizes(batch_size)
    rng = np.random.default_rng([seed, epoch])
    plan = []
    for b, size in enumerate(sizes):
      members = rng.permutation(np.flatnonzero(self.bucket == b))
      plan += [(b, members[i:i + size]) for i in range(0, len(members), size)]
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]

  def batches_per_epoch(self, batch_size) -> int:
    counts = np.bincount(self.bucket, minlength=len(self.buckets.seconds))
    return int(sum(math.ceil(c / n) for c, n in zip(counts, self._sizes(batch_size))))

  def train_batch(self, step: int, batch_size, seed: int,
                  part: tuple[int, int] = (0, 1)) -> dict[str, np.ndarray]:
    """The batch of global step `step`: (seed, step) fully determine it. part=(i, n): only
    the i-th of n equal blocks of its rows, the share of one host of a multi-host run (the
    rows `np.split(full_batch, n)[i]` would give, built without the other hosts' audio)."""
    per_epoch = self.batches_per_epoch(batch_size)
    if per_epoch == 0:
      raise ValueError(f'{self.name}: no usable examples ({self.skipped.summary(self.name)})')
    epoch, i = divmod(step, per_epoch)
    if getattr(self, '_plan_epoch', None) != epoch:
      self._plan, self._plan_epoch = self.epoch_plan(batch_size, seed, epoch), epoch
    bucket, indices = self._plan[i]
    size = self._sizes(batch_size)[bucket]
    index, parts = part
    if size % parts:
      raise ValueError(f'{self.name}: a batch of {size} rows does not split into {parts} parts')
    rows = size // parts
    return self.batch(indices[index * rows:(index + 1) * rows], bucket, rows)

  def eval_batches(self, batch_size: int, limit: int | None = None):
    """Every example once (the first `limit`), grouped by bucket; yields (batch, indices)."""
    keep = np.arange(len(self))[:limit]
    for b in range(self.num_buckets):
      members = keep[self.bucket[keep] == b]
      for i in range(0, len(members), batch_size):
        yield self.batch(members[i:i + batch_size], b, batch_size), members[i:i + batch_size]


def as_int16(audio) -> np.ndarray:
  audio = np.asarray(audio)
  if audio.dtype != np.int16:
    audio = (np.clip(np.nan_to_num(audio.astype(np.float32)), -1, 1) * 32767).astype(np.int16)
  return audio


class LazyAudio:
  """The audio of a lazy Dataset's kept examples, read from the source at each access and not
  kept. `rows[k]`: the source index of the Dataset's example k. A decoded length other than
  the one `meta` announced would break the bucket's shape: it reads as `UnreadableExample`."""

  def __init__(self, source):
    self.source, self.rows = source, []

  def __len__(self):
    return len(self.rows)

  def __getitem__(self, k: int) -> np.ndarray:
    i = self.rows[k]
    example = self.source[i]           # may raise UnreadableExample
    audio = as_int16(example['audio'])
    expected = int(self.source.meta(i)['samples'])
    if audio.size != expected:
      name = _as_str(example.get('id', i))
      raise UnreadableExample(name, 'decoded length differs from the header',
                              f'{name}: {audio.size} samples decoded, {expected} announced')
    return audio


class Prefetch:
  """`fn(step)` for step = start, start+1, ... built by a background thread, at most `depth`
  ahead: the next host batches are decoded while the device trains. `get(step)` must be asked
  in that order; an exception of `fn` is raised by the `get` of its step."""

  def __init__(self, fn, start: int, stop: int, depth: int):
    import queue  # pylint: disable=g-import-not-at-top
    import threading  # pylint: disable=g-import-not-at-top
    self._queue = queue.Queue(maxsize=max(1, depth))
    self._stop = threading.Event()
    self._next = start

    def produce():
      for step in range(start, stop):
        try:
          item = (step, fn(step), None)
        except Exception as e:  # pylint: disable=broad-except
          item = (step, None, e)
        while not self._stop.is_set():
          try:
            self._queue.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if self._stop.is_set() or item[2] is not None:
          return
    self._thread = threading.Thread(target=produce, daemon=True, name='prefetch')
    self._thread.start()

  def get(self, step: int):
    if step != self._next:
      raise ValueError(f'prefetch: step {step} asked, step {self._next} is next')
    got, value, error = self._queue.get()
    self._next += 1
    if error is not None:
      raise error
    assert got == step, (got, step)
    return value

  def close(self):
    self._stop.set()
    self._thread.join()


class Concat:
  """Random access over several sources in turn (e.g. new data plus a replay sample)."""

  def __init__(self, *sources):
    self.sources = sources
    self.offsets = np.cumsum([0] + [len(s) for s in sources])

  def __len__(self):
    return int(self.offsets[-1])

  def __getitem__(self, i):
    s = int(np.searchsorted(self.offsets, i, side='right') - 1)
    return self.sources[s][i - int(self.offsets[s])]


class Subset:
  """Random access to `source` at `indices`, in that order."""

  def __init__(self, source, indices):
    self.source, self.indices = source, [int(i) for i in indices]

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, i):
    return self.source[self.indices[i]]


def _as_str(value) -> str:
  if isinstance(value, bytes):
    return value.decode('utf-8')
  if isinstance(value, np.ndarray):
    return _as_str(value.item())
  return str(value)
