"""Config checks that ml_collections cannot do: values that are inconsistent with each other.

Everything is checked before any work starts, and each error names the key.
"""
from asr import lstm
from asr import train as train_lib


class ConfigError(ValueError):
  pass


def _require(ok: bool, key: str, message: str):
  if not ok:
    raise ConfigError(f'config.{key}: {message}')


def check(cfg):
  d, f, m, t, e = cfg.data, cfg.frontend, cfg.model, cfg.train, cfg.eval
  _require(d.source in ('voice_assistant', 'folder', 'librispeech'), 'data.source',
           f'{d.source!r} is not one of voice_assistant, folder, librispeech')
  _require(d.source != 'folder' or bool(d.folder), 'data.folder', 'required when source=folder')
  secs = list(d.bucket_seconds)
  _require(len(secs) > 0 and all(s > 0 for s in secs) and secs == sorted(secs),
           'data.bucket_seconds', f'{secs} must be positive and increasing')
  _require(d.chars_per_second > 0, 'data.chars_per_second', 'must be > 0')
  _require(f.num_mels > 0 and f.window_ms > 0 and f.hop_ms > 0, 'frontend',
           'num_mels, window_ms and hop_ms must be > 0')
  _require(f.stack >= 1 and f.stride >= 1, 'frontend.stack', 'stack and stride must be >= 1')
  enc = m.encoder
  _require(enc.layers >= 1 and enc.units >= 1, 'model.encoder.layers', 'layers and units >= 1')
  _require(enc.kind in ('dense', 'sparse', 'factorized'), 'model.encoder.kind',
           f'{enc.kind!r} is not one of dense, sparse, factorized')
  _require(0 < enc.budget <= 1, 'model.encoder.budget',
           f'{enc.budget} must be in (0, 1]: a fraction of the dense FLOPs')
  _require(enc.lstm_impl in lstm.IMPLS, 'model.encoder.lstm_impl',
           f'{enc.lstm_impl!r} is not one of {lstm.IMPLS}')
  _require(cfg.bench.reference in ('', 'lstm_ctc', 'rnnt', 'rnnt_loss'), 'bench.reference',
           f'{cfg.bench.reference!r} is not one of lstm_ctc, rnnt, rnnt_loss (or empty)')
  _require(m.ctc_weight >= 0, 'model.ctc_weight', 'must be >= 0')
  _require(t.steps >= 1, 'train.steps', 'must be >= 1')
  _require(t.batch_size >= 1, 'train.batch_size', 'must be >= 1')
  _require(t.lr > 0, 'train.lr', 'must be > 0')
  _require(0 <= t.warmup_steps, 'train.warmup_steps', 'must be >= 0')
  _require(t.checkpoint_every >= 1 and t.log_every >= 1 and t.eval_every >= 1, 'train',
           'checkpoint_every, log_every and eval_every must be >= 1')
  _require(t.nan_policy in ('skip', 'stop'), 'train.nan_policy', f'{t.nan_policy!r} not skip|stop')
  parts = {'encoder', 'predictor', 'joint'} | ({'ctc_head'} if m.ctc_weight > 0 else set())
  frozen = train_lib.frozen_paths(t.frozen)
  _require({k.split('/')[0] for k in frozen} <= parts and set(frozen) != parts, 'train.frozen',
           f'{t.frozen!r}: some (not all) of the model parts {sorted(parts)}, or paths in them')
  _require(e.beam_width >= 1, 'eval.beam_width', 'must be >= 1')
  _require(e.max_symbols_per_frame >= 1, 'eval.max_symbols_per_frame', 'must be >= 1')
  _require(enc.name == 'amnet' or not enc.force_branch, 'model.encoder.force_branch',
           "only the branching encoder (model.encoder.name='amnet') has branches")
  if enc.name == 'amnet':
    _check_amnet(enc)
  if 'diffs' in cfg:
    _check_diffs(cfg.diffs)


def _check_amnet(enc):
  from amortized import amortized_loss  # pylint: disable=g-import-not-at-top
  from amortized import encoder as amnet  # pylint: disable=g-import-not-at-top
  try:
    names = [b.name for b in amnet.parse_branches(enc.branches)]
  except ValueError as e:
    raise ConfigError(f'config.{e}') from None
  _require(not enc.force_branch or enc.force_branch in names, 'model.encoder.force_branch',
           f'{enc.force_branch!r} is not one of the branches {names}')
  _require(enc.loss_variant in amortized_loss.VARIANTS, 'model.encoder.loss_variant',
           f'{enc.loss_variant!r} is not one of {amortized_loss.VARIANTS}')
  _require(enc.lambda_cost >= 0 and enc.lambda_amr >= 0, 'model.encoder.lambda_amr',
           'lambda_cost and lambda_amr must be >= 0')
  _require(enc.backlog_threshold > 0, 'model.encoder.backlog_threshold', 'must be > 0')
  _require(enc.device_flops >= 0 and enc.full_model_rtf > 0, 'model.encoder.device_flops',
           'device_flops must be >= 0 (0 = auto) and full_model_rtf > 0')
  _require(0 < enc.temperature_end <= enc.temperature_start, 'model.encoder.temperature_end',
           'need 0 < temperature_end <= temperature_start')
  _require(enc.anneal_steps >= 1 and enc.prune_epochs >= 0, 'model.encoder.anneal_steps',
           'anneal_steps >= 1 and prune_epochs >= 0')


def _check_diffs(dcfg):
  from diffs import delta  # pylint: disable=g-import-not-at-top
  for method in dcfg.methods.split(','):
    _require(method in delta.METHODS, 'diffs.methods',
             f'{method!r} is not one of {tuple(delta.METHODS)}')
  try:
    budgets = [float(b) for b in dcfg.budgets.split(',')]
  except ValueError:
    raise ConfigError(f'config.diffs.budgets: {dcfg.budgets!r} is not a comma list of fractions')
  _require(all(0 < b < 1 for b in budgets), 'diffs.budgets',
           f'{dcfg.budgets!r}: each budget must be in (0, 1) of the full model\'s bytes')
  _require(dcfg.updates >= 1 and dcfg.steps_per_update >= 1, 'diffs.updates',
           'updates and steps_per_update must be >= 1')
  _require(dcfg.value_dtype in ('fp16', 'int8'), 'diffs.value_dtype', f'{dcfg.value_dtype!r}')
  _require(dcfg.eval_split in ('test', 'test_seen'), 'diffs.eval_split',
           f'{dcfg.eval_split!r}: one of test (held-out voices), test_seen (for choosing settings)')
  _require(dcfg.sparse_mask in ('magnitude', 'fisher'), 'diffs.sparse_mask',
           f'{dcfg.sparse_mask!r}: one of magnitude, fisher')
  _require(dcfg.fisher_batches >= 1, 'diffs.fisher_batches', f'{dcfg.fisher_batches} must be >= 1')
  _require(dcfg.replay_fraction >= 0 and dcfg.lr > 0, 'diffs.replay_fraction',
           'replay_fraction >= 0 and lr > 0')
  _require(dcfg.prune_every >= 0 and dcfg.prune_rounds >= 0, 'diffs.prune_every',
           f'prune_every ({dcfg.prune_every}) and prune_rounds ({dcfg.prune_rounds}) must be >= 0')
  _require(not dcfg.prune_every or dcfg.prune_rounds * dcfg.prune_every < dcfg.steps_per_update,
           'diffs.prune_rounds', f'{dcfg.prune_rounds} rounds of {dcfg.prune_every} steps leave no '
           f'fixed-mask steps of the {dcfg.steps_per_update} per update')
