"""What `launch.py --mode=...` runs. Each mode is a function (cfg, workdir, flags) -> None."""
import json
import os

from absl import logging
import jax

from amortized import compression
from amortized import encoder as amnet
from asr import evaluate as evaluate_lib
from asr import files
from asr import multihost
from asr import text_pieces
from asr import train as train_lib
from asr.data import batching
from experiments import data as data_lib
from experiments import models
from experiments import report
from experiments import sweep as sweep_lib


def parametrization_and_init(cfg, model, train_data):
  """The encoder-specific parts of training: (parametrization, initial variables or None).
  Sparse branches get their gradual pruning schedule, one branch or several alike."""
  enc_cfg = cfg.model.encoder
  param = compression.pruning_parametrization(
      amnet.parse_branches(enc_cfg.branches), cfg.train.steps,
      train_data.batches_per_epoch(train_lib.batch_sizes(cfg, train_data)),
      enc_cfg.prune_epochs, enc_cfg.sparse_group, enc_cfg.prune_every)
  init_vars = None
  if enc_cfg.init_from:
    init_vars = compression.init_from_dense(
        train_lib.init_variables(model, cfg, train_data, cfg.seed),
        train_lib.load_params(enc_cfg.init_from))
  return param, init_vars


def train(cfg, workdir: str, log=print, **_):
  """Trains `cfg` in `workdir` (resuming), evaluating on `cfg.data.eval_split` as it goes.
  Process 0 writes config.json, runs.jsonl and the learning curves (`asr.multihost`)."""
  os.makedirs(workdir, exist_ok=True)
  if multihost.is_main():
    # Atomic: `--mode=transcribe` without --config reads it, possibly while this run starts.
    files.atomic_write(os.path.join(workdir, 'config.json'),
                       cfg.to_json_best_effort(indent=1).encode())
    with open(os.path.join(workdir, 'runs.jsonl'), 'a') as f:    # one line per start or resume
      f.write(json.dumps({**report.stamp(), 'train_steps': cfg.train.steps}) + '\n')
  model = models.build_model(cfg)
  train_data = data_lib.load_split(cfg, cfg.data.train_split, train=True)
  eval_data = data_lib.load_split(cfg, cfg.data.eval_split)
  extra = [s.strip() for s in cfg.data.extra_eval_splits.split(',') if s.strip()]
  if extra:
    eval_data = {cfg.data.eval_split: eval_data,
                 **{split: data_lib.load_split(cfg, split) for split in extra}}
  evaluator = evaluate_lib.Evaluator(model, cfg)
  param, init_vars = parametrization_and_init(cfg, model, train_data)
  _, _, history = train_lib.train(cfg, workdir, model, train_data, eval_data,
                                  parametrization=param, init_vars=init_vars,
                                  evaluate_fn=evaluator, log=log)
  if multihost.is_main():
    report.learning_curves(workdir)
  print(json.dumps({'workdir': workdir, **history}, default=float))
  return history


def eval(cfg, workdir: str, progress: bool = True, **_):  # pylint: disable=redefined-builtin
  """WER/CER of the latest checkpoint on `cfg.data.eval_split`; writes eval_<split>.json
  (eval_<split>_<branch>.json with model.encoder.routing.force_branch)."""
  model = models.build_model(cfg)
  dataset = data_lib.load_split(cfg, cfg.data.eval_split)
  variables, stats = train_lib.load_trained(cfg, workdir, model, dataset)
  evaluator = evaluate_lib.Evaluator(model, cfg, progress=progress)
  result, rows = evaluator(variables, dataset, stats, return_rows=True)
  forced = cfg.model.encoder.routing.force_branch
  out = os.path.join(workdir, f'eval_{cfg.data.eval_split}{"_" + forced if forced else ""}.json')
  if multihost.is_main():
    files.atomic_write(out, json.dumps(
        {'result': result, 'rows': rows}, indent=1,
        default=lambda o: o.tolist() if hasattr(o, 'tolist') else str(o)).encode())
  print(json.dumps({'split': cfg.data.eval_split, **result}))
  return result


def transcribe(cfg, workdir: str, audio: str = '', output: str = '', output_format: str = '',
               stream: bool = False, realtime: bool = False, chunk_ms: float = 300.0,
               progress: bool = True, **_):
  """Prints `path<TAB>text` for an audio file, every audio file in a folder, or stdin (`-`),
  or writes them with word times to `output` (.tsv / .jsonl); `stream` decodes chunk by chunk
  showing the partial hypothesis (experiments/transcription.py)."""
  from experiments import transcription  # pylint: disable=g-import-not-at-top
  transcription.run(cfg, workdir, audio=audio, output=output, fmt=output_format, stream=stream,
                    realtime=realtime, chunk_ms=chunk_ms, progress=progress)


def export(cfg, workdir: str, export_dir: str = '', **_):
  """Writes `workdir`'s trained model as an export (asr/export.py) with its model card, to
  `export_dir` (default `workdir/export`): what `init_from`, `--mode=eval`, `--mode=transcribe`
  and `diffs.cli apply --params` read."""
  from asr import export as export_lib  # pylint: disable=g-import-not-at-top
  from asr import metric_writer  # pylint: disable=g-import-not-at-top
  out = export_dir or os.path.join(workdir, 'export')
  model = models.build_model(cfg)
  variables, stats = train_lib.load_trained(cfg, workdir, model,
                                            batching.Dataset([], data_lib.buckets(cfg)))
  params = jax.device_get(variables['params'])
  evals = [r for r in metric_writer.read_metrics(workdir, 'eval')]
  trains = metric_writer.read_metrics(workdir, 'train')
  card = report.model_card(cfg, workdir, params, evals[-1] if evals else {},
                           trains[-1] if trains else {}, data_lib.fingerprint(cfg))
  if multihost.is_main():
    tokenizer = text_pieces.from_config(cfg)
    saved = cfg
    if isinstance(tokenizer, text_pieces.PieceTokenizer):
      # The export carries its own copy; the training machine's path would not travel with it.
      saved = cfg.copy_and_resolve_references()
      saved.data.tokenizer = text_pieces.PREFIX + export_lib.PIECES
    export_lib.write(out, params, saved.to_json_best_effort(indent=1), stats, card, tokenizer)
  print(f'exported {workdir} -> {out}')


def run_sweep(sweep: dict, root: str, mode: str):
  """--sweep: train every point (skipping finished ones), or write the sweep's report."""
  if mode == 'train':
    sweep_lib.run(sweep, train)
  elif mode == 'report':
    REPORTS[sweep['report']](sweep, root)
  else:
    raise ValueError(f'--sweep runs --mode=train or --mode=report, not {mode!r}')


def _amnet_report(sweep, root):
  from experiments import amnet_report  # pylint: disable=g-import-not-at-top
  return amnet_report.write(sweep, root)


def _curves_report(sweep, root):
  """Training runs side by side (`root/curves.{md,csv,png}`): each evaluated split's WER/CER
  at the sweep's `minutes` of training wall time and at each run's end."""
  runs = {p['name']: p['workdir'] for p in sweep['points']}
  text = report.compare_runs(runs, list(sweep.get('minutes', (10, 20, 30))),
                             os.path.join(root, 'curves'))
  print(text)
  return text


REPORTS = {'amnet': _amnet_report, 'curves': _curves_report}


def diffs(cfg, workdir: str, **_):
  """The neural-diff chains and their table (experiments/configs/diffs.py)."""
  from experiments import diffs_experiment  # pylint: disable=g-import-not-at-top
  return diffs_experiment.run(cfg, workdir)


def demo(cfg, workdir: str, **_):
  """The main job from the shipped base (experiments/configs/demo.py): corpus, AmNet rows +
  table, a two-update sparse-diff chain + table, and `report.md`. Every stage resumes."""
  del cfg
  import time  # pylint: disable=g-import-not-at-top
  from asr.data.voice_assistant import corpus  # pylint: disable=g-import-not-at-top
  from experiments import amnet_report  # pylint: disable=g-import-not-at-top
  from experiments import diffs_experiment  # pylint: disable=g-import-not-at-top
  start = time.time()
  stage = lambda text: print(f'\n=== [{(time.time() - start) / 60:5.1f} min] {text}', flush=True)
  stage('1/4 corpus: building (or finding) voice_assistant/demo')
  with multihost.main_first('corpus demo'):
    corpus.build('demo', corpus.DEFAULT_DATA_DIR)
  amnet_root = os.path.join(workdir, 'amnet')
  sweep = sweep_lib.load_sweep('experiments/sweeps/demo.py', amnet_root)
  stage('2/4 AmNet: the shipped base as the full model; static factorized baseline, AmNet '
        '(factorized fast branch) with and without the latency term, fine-tuned from it')
  sweep_lib.run(sweep, train)
  stage('3/4 AmNet table: WER, FLOPs per frame, routing, latency on the simulated device')
  amnet_text = amnet_report.write(sweep, amnet_root)
  stage('4/4 neural diffs: the shipped base, two sparse-diff updates, packages applied')
  diffs_cfg = sweep_lib.load_config('experiments/configs/demo.py:diffs', {})
  diffs_root = os.path.join(workdir, 'diffs')
  diffs_experiment.run(diffs_cfg, diffs_root)
  with open(os.path.join(diffs_root, 'diffs_table.md')) as f:
    diffs_text = f.read()
  files.atomic_write(os.path.join(workdir, 'report.md'), (
      '# Demo report\n\n' + amnet_text + '\n![WER against FLOPs](amnet/amnet_wer_vs_flops.png)'
      '\n![routing](amnet/amnet_routing.png)\n\n' + diffs_text +
      '\n![WER by update](diffs/diffs_wer_by_update.png)\n').encode())
  stage(f'done: {workdir}/report.md')


def bench(cfg, workdir: str, **_):
  """Speed and memory figures of a config (experiments/bench.py)."""
  from experiments import bench as bench_lib  # pylint: disable=g-import-not-at-top
  return bench_lib.run(cfg, workdir)


def report_mode(cfg, workdir: str, **_):
  del cfg, workdir
  raise ValueError('--mode=report needs --sweep=FILE: a report collects the points of a sweep')


MODES = {'train': train, 'eval': eval, 'transcribe': transcribe, 'report': report_mode,
         'diffs': diffs, 'demo': demo, 'bench': bench, 'export': export}
NO_CONFIG = {'demo'}   # modes that run without --config (demo picks its own)
# Modes that, without --config, read the model's own config from the workdir or export.
CONFIG_FROM_WORKDIR = {'transcribe', 'eval'}
