"""Shared test fixtures: tiny configs and a synthetic in-memory corpus (no TTS needed)."""
import os

import numpy as np

from asr.data import batching
from experiments.configs import common

WORDS = ['go', 'stop', 'up', 'down', 'left', 'right', 'yes', 'no']


def synthetic_examples(n: int, seed: int = 0):
  """Each word is a fixed chord of tones, so a model can learn the mapping from sound."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(0.25 * 16000)) / 16000
  tones = {w: sum(np.sin(2 * np.pi * f * t) for f in (200 + 150 * i, 900 + 230 * i))
           for i, w in enumerate(WORDS)}
  examples = []
  for i in range(n):
    words = list(rng.choice(WORDS, size=rng.integers(1, 3)))
    audio = np.concatenate([np.concatenate([tones[w], np.zeros(1600)]) for w in words])
    audio = 0.3 * audio / np.abs(audio).max() + 0.01 * rng.standard_normal(audio.size)
    examples.append({'audio': (audio * 32767).astype(np.int16), 'transcript': ' '.join(words),
                     'id': f'syn{i}'})
  return examples


def tiny_config(**overrides):
  cfg = common.base_config()
  cfg.data.bucket_seconds = (1.0, 2.0)
  # Each training run would compile its own log-mel for the cache: tests that train many tiny
  # models skip it; test_batching and the resume test cover the cached path.
  cfg.data.cache_features = False
  cfg.frontend.num_mels = 16
  cfg.frontend.spec_augment = False
  cfg.model.encoder.layers = 1
  cfg.model.encoder.units = 32
  cfg.model.pred_embed_dim = 8
  cfg.model.pred_units = 16
  cfg.model.joint_dim = 16
  cfg.train.batch_size = 4
  cfg.train.steps = 6
  cfg.train.warmup_steps = 1
  cfg.train.lr = 5e-3
  cfg.train.log_every = 1
  cfg.train.checkpoint_every = 2
  cfg.train.eval_every = 1000
  cfg.eval.batch_size = 4
  cfg.lock()                      # a misspelt override fails instead of adding a key
  cfg.update_from_flattened_dict(overrides)
  return cfg.unlock()


def tiny_dataset(cfg, n: int = 16, seed: int = 0):
  return batching.Dataset(synthetic_examples(n, seed),
                          batching.Buckets(tuple(cfg.data.bucket_seconds),
                                           cfg.data.chars_per_second))


def fake_corpus(splits=(('base_train', 16, 0), ('base_test', 4, 1)), build_seconds=1.0):
  """A stand-in for `asr.data.voice_assistant.corpus` (install it in sys.modules) whose
  `build` writes synthetic splits to data_dir, slowly, and appends the building process to
  data_dir/builds.log, and whose `load` reads them: a process that loads before the build has
  finished fails, and every build is on record."""
  import pickle  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  module = types.ModuleType('asr.data.voice_assistant.corpus')
  module.DEFAULT_DATA_DIR = ''
  path = lambda name, data_dir: os.path.join(data_dir, f'voice_assistant_{name}.pkl')

  def build(name, data_dir):
    if os.path.exists(path(name, data_dir)):
      return
    time.sleep(build_seconds)
    data = {split: synthetic_examples(n, seed) for split, n, seed in splits}
    with open(path(name, data_dir) + '.tmp', 'wb') as f:
      pickle.dump(data, f)
    os.replace(path(name, data_dir) + '.tmp', path(name, data_dir))
    with open(os.path.join(data_dir, 'builds.log'), 'a') as f:
      f.write(f'{jax.process_index()}\n')

  def load(name, split, data_dir):
    with open(path(name, data_dir), 'rb') as f:
      return pickle.load(f)[split]
  module.build, module.load = build, load
  return module


def stub_evaluator(model, cfg):
  """In place of `asr.evaluate.Evaluator` where a test trains through modes.train but does not
  need its decoding (compiled per bucket, seconds of the test's time)."""
  del model, cfg
  return lambda variables, dataset, stats: {'wer': 1.0}


def simulate_loop(costs, rate: float, hop: float, paddings=None) -> dict:
  """The latency recursion as a plain loop over one utterance: the tests' reference for
  amortized/latency.py (f_t = max(f_{t-1}, a_t) + cost_t / rate, a_t = (t + 1) * hop)."""
  paddings = [0.0] * len(costs) if paddings is None else list(paddings)
  finish, backlog, pending = [], [], []
  f_prev, upl = 0.0, 0.0
  for t, (cost, padding) in enumerate(zip(costs, paddings)):
    arrival = (t + 1) * hop
    if padding >= 0.5:
      finish.append(f_prev)
      backlog.append(0.0)
      pending.append(0.0)
      continue
    pending.append(max(f_prev - arrival, 0.0))
    f_prev = max(f_prev, arrival) + float(cost) / rate
    finish.append(f_prev)
    backlog.append(f_prev - arrival)
    upl = backlog[-1]
  return dict(finish=finish, backlog=backlog, pending=pending, upl=upl)


def read_tensorboard_scalars(logdir: str) -> dict:
  """{tag: [(step, value), ...]} from the event files in `logdir`, parsed record by record
  (TFRecord framing: u64 length, u32 crc, payload, u32 crc) with TensorBoard's Event proto."""
  import glob  # pylint: disable=g-import-not-at-top
  import struct  # pylint: disable=g-import-not-at-top
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  scalars = {}
  for path in sorted(glob.glob(os.path.join(logdir, 'events.out.tfevents.*'))):
    data = open(path, 'rb').read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack('<Q', data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars
