"""The one train loop: a jit-compiled step over a parameter pytree, evaluation, checkpoints.

Every experiment trains through `train()`. What the optimizer sees is the `trainable` pytree of a
`Parametrization`, which maps it (with a `fixed` pytree that is never differentiated) to the
model's variables. Plain training: trainable = params, fixed = pruning masks. A neural diff:
trainable = the delta, fixed = the frozen base and the diff's mask (`diffs/`). Between rounds (an
epoch, or a set number of steps) the parametrization may rewrite both (gradual pruning re-derives
masks).

The train step, top to bottom: derive this step's key from (seed, step); featurize the audio
(SpecAugment on); run the model; RNN-T loss (+ CTC, + the encoder's auxiliary loss, e.g. the
AmNet's amortized terms); gradients w.r.t. trainable only; skip the update if anything is not
finite; clip, Adam with warm-up and cosine decay.
"""
import dataclasses
import functools
import json
import os
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from asr import checkpoint as ckpt_lib
from asr import export
from asr import features
from asr import frontend
from asr import metric_writer
from asr import multihost
from asr import rnnt
from asr import text_pieces
from asr.data import batching

Pytree = Any


@dataclasses.dataclass
class Parametrization:
  """How the optimizer's `trainable` pytree becomes model variables.

  init(variables) -> (trainable, fixed); apply(trainable, fixed) -> variables (differentiable in
  trainable; fixed is closed over); on_round(round, trainable, fixed) -> (trainable, fixed),
  called at the start of every round of `round_steps` steps (0: a round is an epoch), must
  depend only on its arguments (resume-safe).
  """
  init: Callable[[Pytree], tuple[Pytree, Pytree]]
  apply: Callable[[Pytree, Pytree], Pytree]
  on_round: Callable[[int, Pytree, Pytree], tuple[Pytree, Pytree]] | None = None
  round_steps: int = 0


def plain_parametrization() -> Parametrization:
  """Train the params themselves; every other variable collection (masks) stays fixed."""
  def init(variables):
    variables = dict(variables)
    return variables.pop('params'), variables
  return Parametrization(init=init, apply=lambda trainable, fixed: {'params': trainable, **fixed})


def lr_schedule(cfg) -> optax.Schedule:
  """Warm-up from 0 to `cfg.lr`, then cosine decay to `cfg.lr * cfg.final_lr_ratio`."""
  return optax.warmup_cosine_decay_schedule(
      0.0, cfg.lr, cfg.warmup_steps, max(cfg.steps, cfg.warmup_steps + 1),
      cfg.lr * cfg.final_lr_ratio)


def make_optimizer(cfg) -> optax.GradientTransformation:
  """Clip + Adam with warm-up and cosine decay. `cfg.frozen` (comma-separated parameter parts:
  top-level names such as 'predictor,joint' or '/'-separated paths such as
  'encoder/branches/slow') zeroes those parts' gradients first, so Adam's moments stay 0 and
  the parts keep their initial values (a frozen decoder while an encoder is fine-tuned); the
  clip then sees only the trained parts."""
  stages = [optax.clip_by_global_norm(cfg.clip), optax.adam(lr_schedule(cfg))]
  frozen = frozen_paths(cfg.frozen)
  if frozen:
    stages.insert(0, optax.masked(optax.set_to_zero(), functools.partial(_frozen_mask, frozen)))
  return optax.chain(*stages)


def frozen_paths(spec: str) -> list[str]:
  """'predictor, encoder/branches/slow' -> ['predictor', 'encoder/branches/slow']."""
  return [k.strip() for k in spec.split(',') if k.strip()]


def _frozen_mask(frozen: list[str], params):
  def node(path):
    tree = params
    for key in path.split('/'):
      if not isinstance(tree, dict) or key not in tree:
        return None
      tree = tree[key]
    return tree
  missing = [k for k in frozen if node(k) is None]
  if missing:
    top = sorted(params) if isinstance(params, dict) else type(params).__name__
    raise ValueError(f'train.frozen: {missing} not among the parameters (top level: {top})')
  prefixes = [tuple(k.split('/')) for k in frozen]
  mask = jax.tree_util.tree_map_with_path(
      lambda path, _: any(tuple(p.key for p in path[:len(f)]) == f for f in prefixes), params)
  if all(jax.tree_util.tree_leaves(mask)):     # validate.py sees names, not the paths' cover
    raise ValueError(f'train.frozen: {frozen} freezes every parameter; nothing would train')
  return mask


def step_key(seed: int, step) -> jax.Array:
  """All randomness of a step comes from (seed, step): a resumed run draws the same numbers."""
  return jax.random.fold_in(jax.random.key(seed), step)


def sequence_losses(out, labels, label_paddings, model_cfg) -> dict:
  """The model's output -> {name: (weight, per-sequence loss [B])}: the RNN-T loss, the simple
  joint's loss when the joint is pruned, the CTC loss when the model has a CTC head."""
  losses = {'rnnt_loss': (1.0, rnnt.rnnt_loss_from_logprobs(*out['lattice'], out['enc_paddings'],
                                                            label_paddings))}
  if 'simple_lattice' in out:
    losses['simple_loss'] = (model_cfg.simple_loss_weight, rnnt.rnnt_loss_from_logprobs(
        *out['simple_lattice'], out['enc_paddings'], label_paddings))
  if 'ctc_logits' in out and model_cfg.ctc_weight > 0:
    losses['ctc_loss'] = (model_cfg.ctc_weight, optax.ctc_loss(
        out['ctc_logits'], out['ctc_paddings'], labels, label_paddings))
  return losses


def compute_loss(model, variables, batch, stats, cfg, rng, step, train: bool):
  """Per-batch loss and metrics (mean over real rows; padding rows have weight 0)."""
  k_aug, k_model = jax.random.split(rng)
  feats, feat_pads = features.featurize_batch(batch, cfg.frontend, stats,
                                              rng=k_aug if train else None)
  out = model.apply(variables, feats, feat_pads, batch['labels'], batch['label_paddings'],
                    train=train, step=step, rngs={'gumbel': k_model})
  weights = batch['weights']
  denom = jnp.maximum(weights.sum(), 1.0)
  loss, metrics = 0.0, {}
  for name, (weight, per_seq) in sequence_losses(out, batch['labels'], batch['label_paddings'],
                                                  cfg.model).items():
    metrics[name] = (per_seq * weights).sum() / denom
    loss = loss + weight * metrics[name]
  aux = out['aux']
  if 'loss' in aux:
    loss = loss + aux['loss']
  metrics.update({k: v for k, v in aux.items() if k != 'loss' and jnp.ndim(v) == 0})
  metrics['loss'] = loss
  return loss, metrics


def make_train_step(model, cfg, optimizer, parametrization: Parametrization):
  """Returns jitted `train_step(state, fixed, batch, stats) -> (state, metrics)`.

  state = {'step', 'trainable', 'opt_state'} is donated; `fixed` and `stats` are not.
  """
  traces = []

  def train_step(state, fixed, batch, stats):
    traces.append(jax.tree_util.tree_map(jnp.shape, batch))   # runs at trace time only
    step = state['step']

    def loss_fn(trainable):
      variables = parametrization.apply(trainable, fixed)
      return compute_loss(model, variables, batch, stats, cfg, step_key(cfg.seed, step), step,
                          train=True)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['trainable'])
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = optimizer.update(grads, state['opt_state'], state['trainable'])
    trainable = optax.apply_updates(state['trainable'], updates)
    # A non-finite step leaves the state as it was (counted; policy decided by the caller).
    keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = {'step': step + 1, 'trainable': keep(trainable, state['trainable']),
                 'opt_state': keep(opt_state, state['opt_state']),
                 'skipped': state['skipped'] + (1 - finite.astype(jnp.int32))}
    metrics.update(grad_norm=grad_norm, finite=finite.astype(jnp.float32))
    return new_state, metrics

  jitted = jax.jit(train_step, donate_argnums=0)
  jitted.traces = traces
  return jitted


def batch_sizes(cfg, dataset, devices: int | None = None) -> tuple[int, ...]:
  """Rows per training batch of each of `dataset`'s buckets: `train.batch_size`, or with
  `data.batch_seconds` set about that much audio per batch, in multiples of the devices."""
  devices = devices or jax.device_count()
  sizes = batching.bucket_batch_sizes(dataset.buckets, cfg.train.batch_size,
                                      cfg.data.batch_seconds, devices)
  bad = [n for n in sizes if n % devices]
  if bad:
    raise ValueError(f'train.batch_size={cfg.train.batch_size} is not divisible by the '
                     f'{devices} devices of the mesh')
  return sizes


def make_mesh() -> Mesh:
  """One data-parallel axis over every device (all hosts after jax.distributed.initialize)."""
  return Mesh(np.asarray(jax.devices()), ('data',))


def process_part(mesh: Mesh) -> tuple[int, int]:
  """(i, n): this process's devices hold the i-th of n equal blocks of rows of every batch on
  the mesh's `data` axis, so it builds only those rows (`Dataset.train_batch(part=...)`)."""
  n = jax.process_count()
  if n == 1:
    return 0, 1
  index = NamedSharding(mesh, P('data')).addressable_devices_indices_map((mesh.size,))
  rows = sorted(s.indices(mesh.size)[:2] for (s,) in index.values())
  start, stop = rows[0][0], rows[-1][1]
  if stop - start != mesh.size // n or any(a[1] != b[0] for a, b in zip(rows, rows[1:])):
    raise ValueError(f'process {jax.process_index()}: its devices are not one contiguous block '
                     f'of the mesh ({rows} of {mesh.size}); the batch cannot be split by host')
  return start // (stop - start), n


def shard_batch(batch, mesh: Mesh):
  """This process's rows of the global batch (`process_part`; all rows with one process) ->
  global arrays split along the batch axis over the mesh."""
  sharding = NamedSharding(mesh, P('data'))
  n = jax.process_count()
  return {k: jax.make_array_from_process_local_data(sharding, v, (len(v) * n,) + v.shape[1:])
          for k, v in batch.items()}


def replicate(tree, mesh: Mesh):
  """The same value on every device of the mesh. With several processes each places its own
  copy (same seed, same checkpoint, so the same values), which skips device_put's cross-host
  equality check, a collective for every leaf."""
  sharding = NamedSharding(mesh, P())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  def put(x):
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
  return jax.tree_util.tree_map(put, tree)


def feature_stats(dataset, cfg, workdir: str | None, max_utterances: int = 200):
  """Global log-mel mean/std over the first utterances of the training split (cached).

  Every process computes the same numbers (or reads the cache); process 0 writes the cache,
  atomically, so another process reads either nothing or the whole file (float32 values
  survive the JSON round trip exactly)."""
  path = os.path.join(workdir, 'feature_stats.json') if workdir else None
  if path and os.path.exists(path):
    mean, std = frontend.load_stats(path)
    return {'mean': np.asarray(mean, np.float32), 'std': np.asarray(std, np.float32)}
  log_mel = jax.jit(functools.partial(features.log_mel, cfg=cfg))

  def feats():
    for batch, _ in dataset.eval_batches(8, limit=max_utterances):
      if 'log_mel' in batch:
        yield batch['log_mel'], batch['log_mel_paddings']
      else:
        yield tuple(np.asarray(x) for x in log_mel(batch['audio'], batch['audio_paddings']))
  mean, std = frontend.compute_stats(feats())
  if path and multihost.is_main():
    frontend.save_stats(path, mean, std)
  return {'mean': np.asarray(mean, np.float32), 'std': np.asarray(std, np.float32)}


def init_variables(model, cfg, dataset, seed: int):
  """Model variables from a dummy batch of the smallest bucket."""
  stats = {'mean': np.zeros(cfg.frontend.num_mels, np.float32),
           'std': np.ones(cfg.frontend.num_mels, np.float32)}
  batch = dataset.batch([], 0, 1)
  feats, pads = features.featurize_batch(batch, cfg.frontend, stats)
  # Compiled, initialisation takes a third of the time op by op (seconds for these models).
  return jax.jit(model.init)({'params': jax.random.key(seed), 'gumbel': jax.random.key(seed)},
                             feats, pads, batch['labels'], batch['label_paddings'])


class _Preemption:
  """SIGTERM sets a flag; the loop saves a checkpoint and exits at the next step boundary.

  With several processes the save is collective, so every process must stop at the same step
  whichever of them got the signal. After each train step every process dispatches its flag
  to a tiny all-gather and reads the result one step later: all read the same flags at the same
  step, and the host never waits on the step it has just dispatched. With one process the flag
  is read directly, at the step it is seen.
  """

  def __init__(self, mesh: Mesh):
    self.requested = False
    self._old = signal.signal(signal.SIGTERM, self._handle)
    self._mesh = mesh
    self._pending = None
    if jax.process_count() > 1:
      self._sharding = NamedSharding(mesh, P('data'))
      self._gather = jax.jit(lambda flags: flags, out_shardings=NamedSharding(mesh, P()))

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def agreed(self) -> list[int]:
    """The processes that got SIGTERM, the same list on every process (empty: go on)."""
    if jax.process_count() == 1:
      return [0] if self.requested else []
    local = np.full(len(self._sharding.addressable_devices), self.requested, np.int32)
    flags = self._gather(shard_batch({'f': local}, self._mesh)['f'])
    previous, self._pending = self._pending, flags
    if previous is None:
      return []
    devices = self._mesh.devices.flat
    return sorted({devices[j].process_index for j in np.flatnonzero(np.asarray(previous))})

  def restore(self):
    signal.signal(signal.SIGTERM, self._old)


class NonFiniteError(RuntimeError):
  pass


def train(cfg, workdir: str, model, train_data, eval_data=None,
          parametrization: Parametrization | None = None, init_vars: Pytree | None = None,
          evaluate_fn=None, log=print):
  """Trains to `cfg.train.steps`, resuming from `workdir`'s latest checkpoint if present.

  `eval_data` is one dataset or a dict {split name: dataset}; eval records then hold
  `<split>/<metric>`. Every record carries `wall_s`, the run's training wall time so far (kept
  across resumes), so learning curves can be drawn against time.
  Returns (variables, feature stats, history): history holds the last train/eval metrics.

  With several processes (`asr.multihost`) every process runs this with the same arguments:
  each builds only its rows of every batch, evaluates on its own, and saves the checkpoints
  with the others; process 0 alone writes metrics, feature stats and train_summary.json.
  """
  tcfg = cfg.train
  os.makedirs(workdir, exist_ok=True)
  parametrization = parametrization or plain_parametrization()
  mesh = make_mesh()
  sizes = batch_sizes(cfg, train_data, mesh.size)
  stats = feature_stats(train_data, cfg.frontend, workdir, cfg.data.stats_utterances)
  if cfg.data.cache_features:
    log_mel = jax.jit(functools.partial(features.log_mel, cfg=cfg.frontend))
    train_data.cache_log_mel(log_mel)
  variables = init_vars if init_vars is not None else init_variables(model, cfg, train_data,
                                                                      cfg.seed)
  trainable, fixed = parametrization.init(variables)
  optimizer = make_optimizer(tcfg)
  state = {'step': jnp.zeros((), jnp.int32), 'trainable': trainable,
           'opt_state': optimizer.init(trainable), 'skipped': jnp.zeros((), jnp.int32)}

  per_epoch = train_data.batches_per_epoch(sizes)
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), tcfg.checkpoint_every,
                               tcfg.keep_checkpoints)
  if ckpt.latest_step() is not None:
    restored, meta = ckpt.restore({'state': state, 'fixed': fixed})
    state, fixed = restored['state'], restored['fixed']
    if meta.get('batches_per_epoch') != per_epoch or meta.get('seed') != cfg.seed:
      raise ValueError(f'{workdir}: checkpoint was written with a different data or seed '
                       f'({meta}); use a fresh --workdir')
    log(f'resumed from step {int(state["step"])} ({workdir}/checkpoints)')
    wall_before = float(meta.get('wall_s', 0.0))
  else:
    wall_before = 0.0
  state, fixed, stats_dev = replicate(state, mesh), replicate(fixed, mesh), replicate(stats, mesh)
  train_step = make_train_step(model, cfg, optimizer, parametrization)
  writer = metric_writer.MetricWriter(workdir, active=multihost.is_main())
  schedule = lr_schedule(tcfg)
  start = int(state['step'])
  started = time.perf_counter()
  wall = lambda: wall_before + time.perf_counter() - started
  meta = lambda step: {'step': step, 'epoch': step // per_epoch, 'batches_per_epoch': per_epoch,
                       'seed': cfg.seed, 'wall_s': wall()}
  history = {}
  deadline, stopped = tcfg.get('deadline', 0.0), ''
  if deadline and jax.process_count() > 1:
    # Each host's clock would end the loop at a different step and the collective save would
    # hang; a multi-host run is bounded by its scheduler's SIGTERM instead.
    raise ValueError('train.deadline: single-process runs only (got '
                     f'{jax.process_count()} processes); use SIGTERM to end a multi-host run')
  progress = metric_writer.Progress(start, tcfg.steps, log=log)
  preempt = _Preemption(mesh)
  part = process_part(mesh)
  per_round = parametrization.round_steps or per_epoch
  window_audio_s, window_start, window_step = 0.0, wall(), start
  depth = cfg.data.get('prefetch_batches', 0)
  # A batch is a function of its step alone, so building it ahead changes nothing but when.
  prefetch = batching.Prefetch(
      lambda step: train_data.train_batch(step, sizes, cfg.seed, part=part), start,
      tcfg.steps, depth) if depth > 0 else None
  try:
    for step in range(start, tcfg.steps):
      epoch = step // per_epoch
      if parametrization.on_round and step % per_round == 0:
        trainable_host, fixed_host = parametrization.on_round(
            step // per_round, jax.device_get(state['trainable']), jax.device_get(fixed))
        state = dict(state, trainable=replicate(trainable_host, mesh))
        fixed = replicate(fixed_host, mesh)
      host_batch = (prefetch.get(step) if prefetch else
                    train_data.train_batch(step, sizes, cfg.seed, part=part))
      window_audio_s += batching.audio_seconds(host_batch, cfg.frontend.hop_ms / 1000)
      state, metrics = train_step(state, fixed, shard_batch(host_batch, mesh), stats_dev)
      # A deadline (a GPU lent for minutes): the step that crosses it ends the run as the last
      # step would, with a checkpoint, an evaluation and the summary.
      out_of_time = bool(deadline) and time.time() >= deadline
      if tcfg.nan_policy == 'stop' and not bool(metrics['finite']):
        raise NonFiniteError(
            f'non-finite loss or gradient at step {step}; last good checkpoint: step '
            f'{ckpt.latest_step()} in {workdir}/checkpoints (nothing was overwritten)')
      if (step + 1) % tcfg.log_every == 0 or step + 1 == tcfg.steps or out_of_time:
        metrics = jax.device_get(metrics)
        record = {k: float(v) for k, v in metrics.items()}
        if jax.process_count() > 1:       # each host counted its own rows
          window_audio_s = float(multihost_utils.process_allgather(
              np.float32(window_audio_s)).sum())
        record.update(step=step + 1, epoch=epoch, compilations=len(train_step.traces),
                      skipped_nonfinite=int(state['skipped']), wall_s=wall())
        # Audio trained per second of wall time since the last record (compilation included).
        record['audio_s_per_s'] = window_audio_s / max(record['wall_s'] - window_start, 1e-9)
        record['steps_per_s'] = (step + 1 - window_step) / max(record['wall_s'] - window_start,
                                                               1e-9)
        record['lr'] = float(schedule(step))
        window_audio_s, window_start, window_step = 0.0, record['wall_s'], step + 1
        writer.write('train', record)
        history['train'] = record
        progress.update(step + 1, record['loss'])
      done = step + 1 == tcfg.steps or out_of_time
      signalled = preempt.agreed()
      if signalled:
        ckpt.save(step + 1, {'state': state, 'fixed': fixed}, meta(step + 1), force=True)
        where = f' (process {signalled})' if jax.process_count() > 1 else ''
        log(f'SIGTERM{where}: saved step {step + 1} to {workdir}/checkpoints; exiting')
        raise SystemExit(143)
      ckpt.save(step + 1, {'state': state, 'fixed': fixed}, meta(step + 1), force=done)
      if evaluate_fn and eval_data is not None and (
          (step + 1) % tcfg.eval_every == 0 or done):
        variables = parametrization.apply(jax.device_get(state['trainable']),
                                          jax.device_get(fixed))
        eval_start = time.perf_counter()
        if isinstance(eval_data, dict):
          result = {f'{name}/{k}': v for name, data in eval_data.items()
                    for k, v in evaluate_fn(variables, data, stats).items()}
        else:
          result = evaluate_fn(variables, eval_data, stats)
        # Evaluation time is not training time: the curve's x axis excludes it.
        started += time.perf_counter() - eval_start
        writer.write('eval', dict(result, step=step + 1, wall_s=wall()))
        history['eval'] = result
        log(f'step {step + 1}: eval ' + ' '.join(f'{k}={v:.4g}' for k, v in result.items()
                                                 if isinstance(v, float)))
      if out_of_time:
        stopped = f'train.deadline reached at step {step + 1} of {tcfg.steps}'
        log(stopped)
        break
  finally:
    if prefetch:
      prefetch.close()
    preempt.restore()
    progress.close()
    writer.close()
    ckpt.close()
  variables = parametrization.apply(jax.device_get(state['trainable']), jax.device_get(fixed))
  summary = os.path.join(workdir, 'train_summary.json')
  if multihost.is_main():
    with open(summary + '.tmp', 'w') as f:     # atomic: sweeps read it to skip finished runs
      json.dump({'steps': int(state['step']), 'compilations': len(train_step.traces),
                 'buckets_used': len({str(s) for s in train_step.traces}),
                 'skipped_nonfinite': int(state['skipped']), **history,
                 **({'stopped_early': stopped} if stopped else {})},
                f, indent=1, default=float)
    os.replace(summary + '.tmp', summary)
  return variables, stats, history


def load_params(workdir: str):
  """The trained params (numpy pytree) of `workdir`'s latest checkpoint, or of an exported
  model (`asr.export`), any model."""
  if export.is_exported(workdir):
    return export.load(workdir)[0]
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), every=1)
  if ckpt.latest_step() is None:
    raise FileNotFoundError(f'{workdir}/checkpoints: no checkpoint to initialise from')
  state, _ = ckpt.restore_raw()
  ckpt.close()
  return state['state']['trainable']


def restore_state(cfg, workdir: str, parametrization: Parametrization, init_vars):
  """(trainable, fixed) of the latest checkpoint in `workdir`, shaped by `init_vars`."""
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), cfg.train.checkpoint_every)
  if ckpt.latest_step() is None:
    raise FileNotFoundError(f'{workdir}/checkpoints: no checkpoint; train first with '
                            f'--mode=train --workdir={workdir}')
  trainable, fixed = parametrization.init(init_vars)
  optimizer = make_optimizer(cfg.train)
  state = {'step': jnp.zeros((), jnp.int32), 'trainable': trainable,
           'opt_state': optimizer.init(trainable), 'skipped': jnp.zeros((), jnp.int32)}
  restored, _ = ckpt.restore({'state': state, 'fixed': fixed})
  ckpt.close()
  return restored['state']['trainable'], restored['fixed']


def load_trained(cfg, workdir: str, model, dataset, parametrization=None):
  """(variables, stats) of the latest checkpoint in `workdir` (or of an exported model), for
  eval and transcription."""
  if export.is_exported(workdir):
    params, stats = export.load(workdir)
    export.check_tokenizer(workdir, text_pieces.from_config(cfg))
    init = init_variables(model, cfg, dataset, cfg.seed)
    # The exported tree must be the model's: same paths, same shapes.
    want = jax.tree_util.tree_map(np.shape, init['params'])
    got = jax.tree_util.tree_map(np.shape, params)
    if want != got:
      raise ValueError(f'{workdir}: the exported parameters do not fit this config\'s model '
                       '(pass the export\'s own config.json as --config)')
    return {**init, 'params': params}, stats
  parametrization = parametrization or plain_parametrization()
  trainable, fixed = restore_state(cfg, workdir, parametrization,
                                   init_variables(model, cfg, dataset, cfg.seed))
  stats = feature_stats(None, cfg.frontend, workdir)
  return parametrization.apply(trainable, fixed), stats
