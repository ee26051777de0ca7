"""The AmNet table and plots from a sweep's trained rows (`launch.py --mode=report`).

Per row, on the held-out-voice test split: WER, average FLOPs per frame (analytic branch costs
under the model's own argmax routing), share of frames per branch, routing confidence, UPL
median and p90 on the simulated device, parameters, and the measured wall time of streaming
inference (only the chosen branch runs) relative to the full model timed in the same process.
"""
import json
import os
import time

import numpy as np

from amortized import analysis
from asr import frontend
from asr import train as train_lib
from experiments import data as data_lib
from experiments import models
from experiments import report
from experiments import stream_timing
from experiments import sweep as sweep_lib

STREAM_UTTERANCES = 16
STREAM_GROUP = 8        # models per timing process, the full model among them


def evaluate_row(point, cfg, test, log=print) -> tuple[dict, dict]:
  model = models.build_model(cfg)
  variables, stats = train_lib.load_trained(cfg, point['workdir'], model, test)
  from asr import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  result, rows = evaluate_lib.Evaluator(model, cfg)(variables, test, stats, return_rows=True)
  params, effective = analysis.count_params(variables['params']['encoder'],
                                            variables.get('masks', {}).get('encoder'))
  row = {'name': point['name'], 'branches': cfg.model.encoder.branches,
         'latency_loss': (cfg.model.encoder.routing.loss_variant
                          if len(model.encoder.branches) > 1 else '-'),
         'wer': 100 * result['wer'], 'cer': 100 * result['cer'],
         **analysis.routing_columns(model.encoder, rows),
         'encoder_params': params, 'encoder_nonzero': effective}
  log(f'{point["name"]}: WER {row["wer"]:.2f}% {row["mflops_per_frame"]:.3f} MFLOP/frame '
      f'UPL p50 {row["upl_median_ms"]:.1f} ms p90 {row["upl_p90_ms"]:.1f} ms')
  detail = {'rows': rows, 'model': model, 'variables': variables, 'stats': stats, 'cfg': cfg,
            'test': test}
  return row, detail


def write(sweep: dict, root: str, log=print) -> str:
  start = time.time()
  rows, details, tests = [], {}, {}
  for point in sweep['points']:
    cfg = sweep_lib.load_config(point['config'], point['overrides'])
    if not sweep_lib.is_finished(cfg, point['workdir']) and not os.path.exists(
        os.path.join(point['workdir'], 'train_summary.json')):
      log(f'{point["name"]}: not trained yet ({point["workdir"]}), left out of the table')
      continue
    # Rows of one sweep share their test split: one copy of its audio, not one per row.
    key = json.dumps([cfg.data.to_dict(), cfg.frontend.to_dict(), cfg.model.ctc_weight],
                     sort_keys=True)
    if key not in tests:
      tests[key] = data_lib.load_split(cfg, cfg.data.eval_split, log=lambda *_: None)
    row, details[point['name']] = evaluate_row(point, cfg, tests[key], log)
    rows.append(row)
  if not rows:
    raise FileNotFoundError(f'{root}: no trained rows; run the sweep first')
  full = next((r for r in rows if r['name'] == 'full'), rows[0])
  # A sweep may skip the streaming timing (`stream_utterances: 0`): on one CPU thread a
  # paper-size model compiles one program per utterance length and streams at RTF 0.03.
  streamed = sweep.get('stream_utterances', STREAM_UTTERANCES)
  if streamed:
    _stream_times(rows, full, details, sweep, streamed)
  for r in rows:
    r['flops_vs_full'] = 100 * r['mflops_per_frame'] / full['mflops_per_frame']
  cfg0 = details[rows[0]['name']]['cfg']
  enc0 = details[rows[0]['name']]['model'].encoder
  subset = (f'the first {cfg0.eval.max_utterances} utterances of ' if cfg0.eval.max_utterances
            else '')
  notes = (f'Simulated device: {enc0.routing.rate / 1e6:.1f} MFLOP/s single thread, one encoder '
           f'frame every {enc0.routing.hop * 1000:.0f} ms (the full model at '
           f'{cfg0.model.encoder.full_model_rtf:g}x real time). WER on {subset}'
           f'`{cfg0.data.eval_split}` (held-out voices) of corpus `{cfg0.data.corpus}`. ' +
           (f'Streaming time: the '
            f'{streamed} longest test utterances streamed frame by frame (only the '
            f'chosen branch runs) on one CPU thread: the median of {stream_timing.REPEATS} '
            f'passes taken in turn over the rows of one process, {STREAM_GROUP - 1} rows and '
            f'the full model at most per process; "stream time / full" compares a row with the '
            f'full model timed in the same process.' if streamed else
            'Streaming time not measured in this run (the sweep\'s `stream_utterances` is 0).'))
  columns = [('name', 'row'), ('branches', 'branches'), ('latency_loss', 'latency term'),
             ('wer', 'WER %'), ('cer', 'CER %'), ('mflops_per_frame', 'MFLOP/frame'),
             ('flops_vs_full', '% of full FLOPs'), ('shares', 'frames per branch'),
             ('confident_share', '% frames p>=0.99'), ('upl_median_ms', 'UPL p50 ms'),
             ('upl_p90_ms', 'UPL p90 ms'), ('encoder_params', 'enc params'),
             ('encoder_nonzero', 'enc nonzero'), ('stream_rtf', 'stream RTF'),
             ('stream_time_vs_full', 'stream time / full')]
  text = report.write_table(rows, columns, os.path.join(root, 'amnet_table'), 'AmNet table',
                            notes, wall_seconds=time.time() - start)
  report.scatter([(r['name'], r['mflops_per_frame'], r['wer']) for r in rows],
                 'MFLOPs per encoder frame', 'WER % (held-out voices)',
                 os.path.join(root, 'amnet_wer_vs_flops.png'), 'WER against compute',
                 groups={r['name']: 'AmNet' if ',' in r['branches'] else 'one encoder'
                         for r in rows})
  _routing_plot(rows, details, root, sweep.get('routing_row'))
  ablation = [p for p in sweep['points'] if p['name'] in sweep.get('ablation_rows', ())
              and p['name'] in details]
  if ablation:
    text += '\n' + _branch_ablation(ablation, rows, details, root, log)
  log(text)
  return text


def _stream_times(rows, full, details, sweep, utterances=STREAM_UTTERANCES):
  """Each row's streaming RTF, and its ratio to the full model's timed beside it.

  A timing process holds at most STREAM_GROUP models: each model compiles one program per
  utterance length, each program maps hundreds of memory regions, and one process may map
  65,530 (vm.max_map_count), which a 29-row sweep overran. So rows are timed in groups, each
  with the full model as its reference in the same process."""
  def spec(r):
    return {'name': r['name'], 'config': details[r['name']]['cfg'].to_dict(),
            'workdir': next(p['workdir'] for p in sweep['points'] if p['name'] == r['name'])}
  others = [r for r in rows if r is not full]
  for start in range(0, max(len(others), 1), STREAM_GROUP - 1):
    group = [full] + others[start:start + STREAM_GROUP - 1]
    timing = stream_timing.measure({'models': [spec(r) for r in group],
                                    'utterances': utterances})
    reference = timing[0]['rtf']
    if start == 0:
      full['stream_rtf'], full['stream_time_vs_full'] = reference, 1.0
    for r, t in zip(group[1:], timing[1:]):
      r['stream_rtf'], r['stream_time_vs_full'] = t['rtf'], t['rtf'] / reference


def _branch_ablation(points, rows, details, root, log=print) -> str:
  """Each branch of a trained AmNet alone (`model.encoder.routing.force_branch`): the WER it
  would have if every frame went to it, beside the routed WER."""
  from asr import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  start, table = time.time(), []
  for point in points:
    detail = details[point['name']]
    routed = next(r for r in rows if r['name'] == point['name'])
    for branch in detail['model'].encoder.branches:
      cfg = sweep_lib.load_config(point['config'], {
          **point['overrides'], 'model.encoder.routing.force_branch': branch.name})
      result = evaluate_lib.Evaluator(models.build_model(cfg), cfg)(
          detail['variables'], detail['test'], detail['stats'])
      table.append({'name': point['name'], 'branch': f'{branch.name} ({branch.kind}'
                    f'{"" if branch.kind == "dense" else f" {branch.budget:g}"})',
                    'wer_alone': 100 * result['wer'], 'cer_alone': 100 * result['cer'],
                    'routed_wer': routed['wer'], 'shares': routed['shares']})
      log(f'{point["name"]}, every frame to {branch.name}: WER {100 * result["wer"]:.2f}%')
  columns = [('name', 'row'), ('branch', 'every frame to'), ('wer_alone', 'WER %'),
             ('cer_alone', 'CER %'), ('routed_wer', 'routed WER %'),
             ('shares', 'routed frames per branch')]
  notes = ('The trained AmNet with `model.encoder.routing.force_branch` set: the arbitrator is '
           'bypassed and every frame runs the named branch; same test utterances as the table.')
  return report.write_table(table, columns, os.path.join(root, 'amnet_branch_ablation'),
                            'Each branch alone', notes, wall_seconds=time.time() - start)


def _routing_plot(rows, details, root, routing_row=None):
  """The still of the sweep's `routing_row` (default: the first AmNet with a latency term) on
  its longest test utterance."""
  amnets = [routing_row] if routing_row else []
  amnets += [r['name'] for r in rows if r['latency_loss'] not in ('-', 'none')]
  amnets += [r['name'] for r in rows if r['latency_loss'] == 'none']
  if not amnets:
    return
  detail = details[amnets[0]]
  longest = int(np.argmax([len(r['route']) for r in detail['rows']]))
  row = detail['rows'][longest]
  index = detail['test'].ids.index(row['id'])
  audio = detail['test'].audio[index][None]
  cfg = detail['cfg']
  mel, _ = frontend.log_mel(audio, np.zeros(audio.shape, np.float32),
                            num_mels=cfg.frontend.num_mels)
  enc = detail['model'].encoder
  report.routing_still(np.asarray(mel[0]), np.asarray(row['route']).argmax(-1),
                       [b.name for b in enc.branches], 1000 * np.asarray(row['backlog']),
                       enc.routing.hop, os.path.join(root, 'amnet_routing.png'),
                       f'{amnets[0]}: "{row["ref"][:60]}"')
