"""`launch.py --mode=bench`: speed and memory of a config, comparisons side by side in one run.

Prints one JSON line per figure, then a table:
  - train step: compile time (first call, apart), median step time over `bench.steps` steps after
    `bench.warmup`, utterance-seconds trained per second, memory: XLA's estimate for the step
    alone (arguments, outputs, temporaries) and the peak so far in the process (device
    `memory_stats` on GPU/TPU; peak RSS on CPU, Python heap included), which for the second model
    of a comparison is the larger of the two;
  - for an AmNet config the same for its dense single-branch model of the same shape, and the
    ratio AmNet / full;
  - the RNN-T loss, forward + backward: `rnnt_loss` on full logits against `rnnt_loss_lean`
    (chunked joint), time and XLA's temporary-memory estimate;
  - streaming inference on one CPU thread (`experiments.stream_timing`): time per encoder frame,
    real-time factor and the ratio to the first model timed, for each branch alone (the first
    branch first) and the AmNet with its routing, or for a single sparse branch after the dense
    branch of its shape; with `model.encoder.sparse_group` a sparse model is timed twice, in the
    grouped sparse format and as its masked dense weights, so dense, masked dense and grouped
    sparse stand side by side in one process.
Synthetic batches of the largest bucket are used, so no corpus is needed.

With `bench.reference` set, it times that comparison with PyTorch instead
(`experiments/reference.py`).
"""
import json
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from asr import rnnt
from asr import train as train_lib
from asr.data import batching
from experiments import data as data_lib
from experiments import models
from experiments import reference
from experiments import stream_timing
from experiments.configs import common


def _emit(record: dict, rows: list):
  print(json.dumps(record, default=float), flush=True)
  rows.append(record)


def _peak_memory_bytes() -> tuple[int, str]:
  dev = jax.devices()[0]
  stats = dev.memory_stats() if hasattr(dev, 'memory_stats') else None
  if stats and 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use']), 'device peak'
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 'process peak RSS'


def _synthetic_batch(cfg, rng):
  buckets = data_lib.buckets(cfg)
  b = len(buckets.seconds) - 1
  n, u = buckets.samples(b), buckets.max_labels(b) // 2
  examples = [{'audio': (rng.standard_normal(n) * 3000).astype(np.int16),
               'transcript': ''.join(rng.choice(list('abcdefgh '), u)).strip() or 'a',
               'id': str(i)} for i in range(cfg.train.batch_size)]
  data = batching.Dataset(examples, buckets)
  return data, data.batch(list(range(len(data))), b, cfg.train.batch_size), buckets.seconds[b]


def train_step_figures(cfg, name: str) -> dict:
  model = models.build_model(cfg)
  rng = np.random.default_rng(0)
  data, batch, seconds = _synthetic_batch(cfg, rng)
  variables = train_lib.init_variables(model, cfg, data, cfg.seed)
  param = train_lib.plain_parametrization()
  trainable, fixed = param.init(variables)
  optimizer = train_lib.make_optimizer(cfg.train)
  mesh = train_lib.make_mesh()
  state = train_lib.replicate({'step': jnp.zeros((), jnp.int32), 'trainable': trainable,
                               'opt_state': optimizer.init(trainable),
                               'skipped': jnp.zeros((), jnp.int32)}, mesh)
  fixed = train_lib.replicate(fixed, mesh)
  stats = train_lib.replicate({'mean': np.zeros(cfg.frontend.num_mels, np.float32),
                               'std': np.ones(cfg.frontend.num_mels, np.float32)}, mesh)
  batch = train_lib.shard_batch(batch, mesh)
  t0 = time.perf_counter()
  step = train_lib.make_train_step(model, cfg, optimizer, param).lower(
      state, fixed, batch, stats).compile()
  compile_s = time.perf_counter() - t0
  step_memory = _compiled_memory_bytes(step)
  for _ in range(cfg.bench.warmup):
    state, metrics = step(state, fixed, batch, stats)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(cfg.bench.steps):
    t0 = time.perf_counter()
    state, metrics = step(state, fixed, batch, stats)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  median = statistics.median(times)
  peak, peak_kind = _peak_memory_bytes()
  return {'figure': 'train_step', 'model': name, 'compile_s': compile_s, 'step_s': median,
          'utterance_seconds_per_s': cfg.train.batch_size * seconds / median,
          'batch': cfg.train.batch_size, 'bucket_seconds': seconds, 'steps_timed': len(times),
          'peak_memory_mb': peak / 2**20, 'memory_kind': peak_kind,
          'step_memory_mb': step_memory / 2**20}


def _compiled_memory_bytes(compiled) -> float:
  """XLA's estimate for one step alone: arguments + outputs + temporaries, less donated."""
  mem = compiled.memory_analysis()
  if mem is None:
    return float('nan')
  return (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
          - mem.alias_size_in_bytes)


def loss_figures(shape, reps: int) -> list[dict]:
  """rnnt_loss on [B, T, U+1, V] logits vs the lean chunked joint, forward + backward."""
  b, t, u, v = shape
  key = jax.random.key(0)
  k1, k2, k3 = jax.random.split(key, 3)
  j = 64
  enc = jax.random.normal(k1, (b, t, j))
  pred = jax.random.normal(k2, (b, u + 1, j))
  w = jax.random.normal(k3, (j, v)) * 0.1
  labels = jnp.ones((b, u), jnp.int32)
  pads_t, pads_u = jnp.zeros((b, t)), jnp.zeros((b, u))
  joint = lambda e, p, w: jnp.tanh(e + p) @ w

  def plain(w):
    logits = joint(enc[:, :, None], pred[:, None], w)
    return rnnt.rnnt_loss(logits, pads_t, labels, pads_u).sum()

  def lean(w):
    return rnnt.rnnt_loss_lean(enc, pred, lambda e, p: joint(e, p, w), pads_t, labels,
                               pads_u).sum()
  out = []
  for name, fn in (('rnnt_loss', plain), ('rnnt_loss_lean', lean)):
    grad = jax.jit(jax.grad(fn))
    t0 = time.perf_counter()
    compiled = grad.lower(w).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(w))
    times = []
    for _ in range(reps):
      t0 = time.perf_counter()
      jax.block_until_ready(compiled(w))
      times.append(time.perf_counter() - t0)
    mem = compiled.memory_analysis()
    temp = getattr(mem, 'temp_size_in_bytes', float('nan')) if mem is not None else float('nan')
    out.append({'figure': 'loss', 'variant': name, 'shape': list(shape), 'compile_s': compile_s,
                'step_s': statistics.median(times), 'temp_memory_mb': temp / 2**20})
  return out


def _with_branches(cfg, branches: str):
  """The config with other branches; a single branch gets the default routing keys, and
  branches without a sparse one no pruning group, keys they do not read (validate.py refuses
  others)."""
  out = ml_collections.ConfigDict(cfg.to_dict())
  out.model.encoder.branches = branches
  out.model.encoder.init_from = ''
  if ',' not in branches:
    out.model.encoder.routing = common.base_config().model.encoder.routing
  if ':sparse' not in branches:
    out.model.encoder.sparse_group = 0
  return out


def run(cfg, workdir: str, **_):
  del workdir
  rows = []
  if cfg.bench.reference:          # a comparison with PyTorch is a benchmark of its own
    for record in reference.figures(cfg):
      _emit(record, rows)
    _print_table(rows)
    return rows
  main = train_step_figures(cfg, 'config')
  _emit(main, rows)
  enc = cfg.model.encoder
  grouped = bool(enc.sparse_group)            # validate.py: then some branch is sparse
  stream_models = []

  def stream_model(name, config, workdir=None, sparse=False):
    stream_models.append({'name': name, 'config': config.to_dict(), 'workdir': workdir})
    if sparse and grouped:
      stream_models.append({'name': f'{name}, masked dense', 'config': config.to_dict(),
                            'workdir': workdir, 'sparse_format': 'masked'})

  if ',' in enc.branches:
    full = train_step_figures(_with_branches(cfg, 'main:dense'), 'dense single branch')
    _emit(full, rows)
    _emit({'figure': 'ratio', 'what': 'AmNet train step / full train step',
           'value': main['step_s'] / full['step_s']}, rows)
    for item in enc.branches.split(','):
      stream_model(f'branch {item} alone', _with_branches(cfg, item), sparse=':sparse' in item)
    stream_model('AmNet (routed)', cfg, cfg.bench.trained_workdir or None, sparse=grouped)
  else:
    if ':sparse' in enc.branches:
      stream_model('dense single branch', _with_branches(cfg, 'main:dense'))
    stream_model('config', cfg, cfg.bench.trained_workdir or None, sparse=True)
  for shape in cfg.bench.loss_shapes:
    for record in loss_figures(tuple(shape), cfg.bench.loss_reps):
      _emit(record, rows)
  if not cfg.bench.stream_utterances:       # 0: train-step figures only (batch-scaling runs)
    _print_table(rows)
    return rows
  results = stream_timing.measure({'models': stream_models,
                                   'utterances': cfg.bench.stream_utterances,
                                   'seconds': cfg.bench.stream_seconds})
  first = results[0]['rtf']
  for r in results:
    _emit({'figure': 'streaming', 'model': r['name'], 'rtf_one_thread': r['rtf'],
           'ms_per_frame': r['ms_per_frame'], 'vs_first': r['rtf'] / first}, rows)
  _print_table(rows)
  return rows


def _print_table(rows):
  print('\n| figure | model / variant | value |\n|---|---|---|')
  for r in rows:
    if r['figure'] == 'train_step':
      print(f"| train step | {r['model']} | {1000 * r['step_s']:.1f} ms (compile "
            f"{r['compile_s']:.1f} s), {r['utterance_seconds_per_s']:.0f} utt-s/s, "
            f"step {r['step_memory_mb']:.0f} MB (XLA), {r['peak_memory_mb']:.0f} MB "
            f"{r['memory_kind']} so far |")
    elif r['figure'] == 'ratio':
      print(f"| ratio | {r['what']} | {r['value']:.2f} |")
    elif r['figure'] == 'loss':
      print(f"| RNN-T loss fwd+bwd {r['shape']} | {r['variant']} | {1000 * r['step_s']:.1f} ms, "
            f"temp {r['temp_memory_mb']:.1f} MB |")
    elif r['figure'] == 'reference' and 'skipped' in r:
      print(f"| {r['model']} step | {r['side']} | skipped: {r['skipped']} |")
    elif r['figure'] == 'reference':
      where = r.get('device', r.get('backend'))
      print(f"| {r['model']} step | {r['side']} ({where}) | {1000 * r['step_s']:.1f} ms"
            + (f" (compile {r['compile_s']:.1f} s)" if 'compile_s' in r else '') + ' |')
    elif r['figure'] == 'streaming':
      print(f"| streaming, 1 CPU thread | {r['model']} | {1000 * r['ms_per_frame']:.1f} us/frame, "
            f"RTF {r['rtf_one_thread']:.4f} ({r['vs_first']:.2f}x the first) |")
