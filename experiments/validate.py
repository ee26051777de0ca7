"""Config checks that ml_collections cannot do: values that are inconsistent with each other.

Everything is checked before any work starts, and each error names the key.
"""
import os

from asr import lstm
from asr import text_pieces
from asr import train as train_lib
from experiments import data as data_lib
from experiments.configs import common


class ConfigError(ValueError):
  pass


def _require(ok: bool, key: str, message: str):
  if not ok:
    raise ConfigError(f'config.{key}: {message}')


def check(cfg):
  data, frontend, model, train, evals = (cfg.data, cfg.frontend, cfg.model, cfg.train,
                                         cfg.eval)
  _require(data.source in data_lib.SOURCES, 'data.source',
           f'{data.source!r} is not one of {", ".join(data_lib.SOURCES)}')
  _require(data.source != 'folder' or bool(data.folder), 'data.folder',
           'required when source=folder')
  if data.source == 'librispeech_dir':
    _check_librispeech_dir(data)
  lazy = data.get('lazy_audio', False)
  _require(not lazy or data.source == 'librispeech_dir', 'data.lazy_audio',
           'True needs source=librispeech_dir (its index knows every length without '
           f'decoding); source={data.source!r} is read into memory')
  _require(not (lazy and data.cache_features), 'data.cache_features',
           'True holds the log-mel of the whole train split in memory, which '
           'data.lazy_audio=True avoids; set one of them to False')
  _require(data.get('prefetch_batches', 0) >= 0, 'data.prefetch_batches',
           'must be >= 0 (0 = none)')
  try:
    text_pieces.from_config(cfg)
  except text_pieces.TokenizerError as e:
    raise ConfigError(str(e)) from None       # it names the key, and the path if missing
  secs = list(data.bucket_seconds)
  _require(len(secs) > 0 and all(s > 0 for s in secs) and secs == sorted(secs),
           'data.bucket_seconds', f'{secs} must be positive and increasing')
  _require(data.chars_per_second > 0, 'data.chars_per_second', 'must be > 0')
  _require(data.batch_seconds >= 0, 'data.batch_seconds', 'must be >= 0 (0 = train.batch_size)')
  _require(frontend.num_mels > 0 and frontend.window_ms > 0 and frontend.hop_ms > 0, 'frontend',
           'num_mels, window_ms and hop_ms must be > 0')
  _require(frontend.cmn_prior_frames > 0, 'frontend.cmn_prior_frames',
           f'{frontend.cmn_prior_frames} must be > 0 (frames of prior at the global mean)')
  _require(0 <= frontend.vtlp_warp < 0.5, 'frontend.vtlp_warp',
           f'{frontend.vtlp_warp} is not in [0, 0.5) (the warp factor range is 1 +- it)')
  _require(frontend.stack >= 1 and frontend.stride >= 1, 'frontend.stack',
           'stack and stride must be >= 1')
  enc = model.encoder
  _require(enc.layers >= 1 and enc.units >= 1, 'model.encoder.layers', 'layers and units >= 1')
  _require(enc.lstm_impl in lstm.IMPLS, 'model.encoder.lstm_impl',
           f'{enc.lstm_impl!r} is not one of {lstm.IMPLS}')
  _require(enc.device_flops >= 0 and enc.full_model_rtf > 0, 'model.encoder.device_flops',
           'device_flops must be >= 0 (0 = auto) and full_model_rtf > 0')
  _require(enc.prune_epochs >= 0, 'model.encoder.prune_epochs', 'must be >= 0')
  _require(enc.prune_every >= 0, 'model.encoder.prune_every', 'must be >= 0 (0 = an epoch)')
  _check_encoder(enc)
  _require(cfg.bench.reference in ('', 'lstm_ctc', 'rnnt', 'rnnt_loss'), 'bench.reference',
           f'{cfg.bench.reference!r} is not one of lstm_ctc, rnnt, rnnt_loss (or empty)')
  _require(model.ctc_weight >= 0, 'model.ctc_weight', 'must be >= 0')
  _require(model.ctc_upsample >= 1, 'model.ctc_upsample', 'must be >= 1')
  _require(model.prune_range >= 0 and model.simple_loss_weight >= 0, 'model.prune_range',
           'prune_range and simple_loss_weight must be >= 0 (prune_range 0 = the full joint)')
  _require(model.prune_range != 1, 'model.prune_range',
           '1 leaves no label arc inside a band; use 0 (full joint) or >= 2')
  _require(train.steps >= 1, 'train.steps', 'must be >= 1')
  _require(train.batch_size >= 1, 'train.batch_size', 'must be >= 1')
  _require(train.lr > 0, 'train.lr', 'must be > 0')
  _require(0 <= train.warmup_steps, 'train.warmup_steps', 'must be >= 0')
  _require(train.checkpoint_every >= 1 and train.log_every >= 1 and train.eval_every >= 1,
           'train', 'checkpoint_every, log_every and eval_every must be >= 1')
  _require(train.get('deadline', 0.0) >= 0, 'train.deadline', 'must be a unix time, or 0 (none)')
  _require(train.nan_policy in ('skip', 'stop'), 'train.nan_policy',
           f'{train.nan_policy!r} not skip|stop')
  parts = ({'encoder', 'predictor', 'joint'} | ({'ctc_head'} if model.ctc_weight > 0 else set())
           | ({'simple_enc', 'simple_pred'} if model.prune_range else set()))
  frozen = train_lib.frozen_paths(train.frozen)
  _require({k.split('/')[0] for k in frozen} <= parts and set(frozen) != parts, 'train.frozen',
           f'{train.frozen!r}: some (not all) of the model parts {sorted(parts)}, or paths in them')
  _require(evals.beam_width >= 1, 'eval.beam_width', 'must be >= 1')
  _require(evals.max_symbols_per_frame >= 1, 'eval.max_symbols_per_frame', 'must be >= 1')
  if 'diffs' in cfg:
    _check_diffs(cfg.diffs)
    # A diff carries params; a sparse branch's masks live in another collection.
    _require(':sparse' not in enc.branches, 'model.encoder.branches',
             f'{enc.branches!r}: a diff carries the params only, not a sparse branch\'s pruning '
             'masks; diff a dense, factorized or routed dense/factorized model')


def _check_librispeech_dir(data):
  """Every split folder is checked now: the train split loads first, and a missing evaluation
  split would otherwise show only after it."""
  from asr.data import librispeech_dir  # pylint: disable=g-import-not-at-top
  root = data.librispeech_dir
  _require(bool(root), 'data.librispeech_dir',
           'required when source=librispeech_dir: the LibriSpeech folder holding '
           'train-clean-100, dev-clean, ...')
  _require(os.path.isdir(root), 'data.librispeech_dir', f'{root!r} is not a folder')
  keys = [('data.train_split', data.train_split), ('data.eval_split', data.eval_split)]
  keys += [('data.extra_eval_splits', s.strip()) for s in data.extra_eval_splits.split(',')
           if s.strip()]
  for key, splits in keys:
    try:
      librispeech_dir.split_dirs(root, splits)
    except librispeech_dir.FolderError as e:
      raise ConfigError(f'config.{key}: {e}') from None


def _check_encoder(enc):
  from amortized import amortized_loss  # pylint: disable=g-import-not-at-top
  from amortized import encoder as amnet  # pylint: disable=g-import-not-at-top
  try:
    specs = amnet.parse_branches(enc.branches)
  except ValueError as e:
    raise ConfigError(f'config.{e}') from None
  names, kinds = [b.name for b in specs], {b.kind for b in specs}
  group = enc.sparse_group
  _require(group >= 0, 'model.encoder.sparse_group', f'{group} must be >= 0 (0 = element-wise)')
  _require(not group or 'sparse' in kinds, 'model.encoder.sparse_group',
           f'{group} applies only to sparse branches; model.encoder.branches={enc.branches!r} '
           'has none')
  widths = [4 * enc.units] + ([enc.proj] if enc.proj else [])
  _require(not group or all(w % group == 0 for w in widths), 'model.encoder.sparse_group',
           f'{group} must divide every pruned matrix\'s output width {widths} (4 x units'
           + (', proj)' if enc.proj else ')'))
  routing = enc.routing
  if len(names) == 1:
    # A baseline has no arbitrator: a routing key set away from its default would do nothing.
    defaults = common.base_config().model.encoder.routing
    for key in sorted(routing):
      _require(routing[key] == defaults[key], f'model.encoder.routing.{key}',
               f'{routing[key]!r} applies only to a routed encoder; model.encoder.branches='
               f'{enc.branches!r} has one branch')
    return
  _require(not routing.force_branch or routing.force_branch in names,
           'model.encoder.routing.force_branch',
           f'{routing.force_branch!r} is not one of the branches {names}')
  _require(routing.loss_variant in amortized_loss.VARIANTS, 'model.encoder.routing.loss_variant',
           f'{routing.loss_variant!r} is not one of {amortized_loss.VARIANTS}')
  _require(routing.g_shape in amortized_loss.G_SHAPES, 'model.encoder.routing.g_shape',
           f'{routing.g_shape!r} is not one of {amortized_loss.G_SHAPES}')
  _require(routing.lambda_cost >= 0 and routing.lambda_amr >= 0,
           'model.encoder.routing.lambda_amr', 'lambda_cost and lambda_amr must be >= 0')
  _require(routing.backlog_threshold > 0, 'model.encoder.routing.backlog_threshold',
           'must be > 0')
  _require(0 < routing.temperature_end <= routing.temperature_start,
           'model.encoder.routing.temperature_end',
           'need 0 < temperature_end <= temperature_start')
  _require(routing.anneal_steps >= 1, 'model.encoder.routing.anneal_steps', 'must be >= 1')
  _require(routing.arbitrator_hidden >= 1, 'model.encoder.routing.arbitrator_hidden',
           'must be >= 1')


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
  key = dcfg.get('signing_key', '')
  _require(isinstance(key, str) and (not key or os.path.isfile(key)), 'diffs.signing_key',
           f'{key!r}: no such private key file (empty: a chain-local maker key in the workdir)')
  from diffs import chain  # pylint: disable=g-import-not-at-top
  try:
    chain.learning_rates(dcfg)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  _require(dcfg.replay_fraction >= 0 and dcfg.lr > 0, 'diffs.replay_fraction',
           'replay_fraction >= 0 and lr > 0')
  _require(dcfg.prune_every >= 0 and dcfg.prune_rounds >= 0, 'diffs.prune_every',
           f'prune_every ({dcfg.prune_every}) and prune_rounds ({dcfg.prune_rounds}) must be >= 0')
  _require(not dcfg.prune_every or dcfg.prune_rounds * dcfg.prune_every < dcfg.steps_per_update,
           'diffs.prune_rounds', f'{dcfg.prune_rounds} rounds of {dcfg.prune_every} steps leave no '
           f'fixed-mask steps of the {dcfg.steps_per_update} per update')
