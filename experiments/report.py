"""The one report writer: every table (Markdown + CSV) and plot of the project goes through here,
each stamped with the command that produced it, the commit and the machine."""
import csv
import datetime
import io
import os
import platform
import subprocess
import sys

import jax
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from asr import files  # pylint: disable=g-import-not-at-top,wrong-import-position


def _save(fig, path: str) -> None:
  # atomic, like every table: a report re-run beside a reader never leaves half a PNG
  image = io.BytesIO()
  fig.savefig(image, dpi=120, format='png')
  files.atomic_write(path, image.getvalue())


def machine() -> str:
  dev = jax.devices()[0]
  if dev.platform == 'cpu':
    return (f'CPU {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} '
            f'({len(jax.devices())} device)')
  return f'{len(jax.devices())} x {dev.device_kind}, jax {jax.__version__}'


def commit() -> str:
  try:
    out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                           capture_output=True, text=True, check=True).stdout.strip()
    return out + ('+uncommitted' if dirty else '')
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def command() -> str:
  return 'python ' + ' '.join(sys.argv)


def stamp() -> dict:
  """Who produced a result: command, commit, machine and date."""
  return {'command': command(), 'commit': commit(), 'machine': machine(),
          'date': datetime.date.today().isoformat()}


def model_card(cfg, workdir: str, params, last_eval: dict, last_train: dict,
               corpus: str) -> str:
  """The Markdown card of an exported model: what it is, how it was trained, what it scores."""
  import json  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  runs = []
  runs_path = os.path.join(workdir, 'runs.jsonl')
  if os.path.exists(runs_path):
    with open(runs_path) as f:
      runs = [json.loads(line) for line in f if line.strip()]
  leaves = jax.tree_util.tree_leaves(params)
  count = sum(int(np.size(x)) for x in leaves)
  from asr import text_pieces  # pylint: disable=g-import-not-at-top
  enc = cfg.model.encoder
  lines = [
      f'# Model card: `{os.path.basename(os.path.abspath(workdir))}`', '',
      f'RNN-T with {enc.layers} x LSTM-{enc.units} encoder (branches `{enc.branches}`), '
      f'predictor LSTM-{cfg.model.pred_units}, joint {cfg.model.joint_dim}, CTC head weight '
      f'{cfg.model.ctc_weight:g}; {count:,} parameters ({4 * count / 1e6:.1f} MB as float32). '
      + (f'{text_pieces.from_config(cfg).vocab_size - 1} word pieces (tokenizer.model); '
         if cfg.data.get('tokenizer', 'chars') != 'chars' else
         'Character alphabet (tokenizer.json); ')
      + f'{cfg.frontend.num_mels} log-mels, '
      f'{cfg.frontend.hop_ms * cfg.frontend.stride:g} ms encoder frames'
      + (f', RNN-T joint pruned to {cfg.model.prune_range} label positions per frame in training'
         if cfg.model.prune_range else '')
      + (f', vocal-tract-length perturbation +-{cfg.frontend.vtlp_warp:g}'
         if cfg.frontend.vtlp_warp else '')
      + (f', causal mean normalisation (a prior of {cfg.frontend.cmn_prior_frames:g} frames)'
         if cfg.frontend.causal_cmn else '') + '.', '',
      f'- corpus: {corpus} (train split `{cfg.data.train_split}`)',
      f'- training: {last_train.get("step", "?")} steps, '
      f'{last_train.get("wall_s", float("nan")) / 60:.1f} min of training wall time',
  ]
  for run in runs:
    schedule = (f' (a schedule of {run["train_steps"]:,} steps)' if 'train_steps' in run else '')
    lines.append(f'- trained by `{run["command"]}` at commit {run["commit"]} on {run["machine"]}, '
                 f'{run["date"]}{schedule}')
  lines.append(f'- exported by `{command()}` at commit {commit()}, {datetime.date.today()}')
  splits = sorted({k.split('/')[0] for k in last_eval if '/' in k})
  if splits:
    lines += ['', f'Scores at step {last_eval.get("step")} (greedy decoding; the first '
              f'{cfg.eval.max_utterances or "all"} utterances of each split):', '',
              '| split | WER % | CER % |', '|---|---:|---:|']
    lines += [f'| `{s}` | {100 * last_eval[s + "/wer"]:.2f} | {100 * last_eval[s + "/cer"]:.2f} |'
              for s in splits]
  elif 'wer' in last_eval:
    lines += ['', f'Score at step {last_eval.get("step")} on `{cfg.data.eval_split}`: WER '
              f'{100 * last_eval["wer"]:.2f}%, CER {100 * last_eval["cer"]:.2f}%']
  return '\n'.join(lines) + '\n'


def _fmt(value) -> str:
  if value is None:            # a figure not computed in this run
    return '-'
  if isinstance(value, float):
    if value != value:
      return 'n/a'
    return f'{value:.4g}' if abs(value) < 1e5 else f'{value:.3e}'
  return str(value)


def write_table(rows: list[dict], columns: list[tuple[str, str]], stem: str, title: str,
                notes: str = '', wall_seconds: float | None = None) -> str:
  """Writes `stem.md` and `stem.csv`; columns are (key, header). Returns the Markdown text."""
  os.makedirs(os.path.dirname(stem) or '.', exist_ok=True)
  table = io.StringIO(newline='')
  writer = csv.writer(table)
  writer.writerow([key for key, _ in columns])
  for row in rows:
    writer.writerow([row.get(key, '') for key, _ in columns])
  files.atomic_write(stem + '.csv', table.getvalue().encode())
  lines = [f'### {title}', '',
           f'Command: `{command()}`  ', f'Commit: {commit()}  ', f'Machine: {machine()}  ',
           f'Date: {datetime.date.today().isoformat()}' +
           (f'  \nWall time: {wall_seconds / 60:.1f} min' if wall_seconds else ''), '',
           '| ' + ' | '.join(h for _, h in columns) + ' |',
           '|' + '---|' * len(columns)]
  for row in rows:
    lines.append('| ' + ' | '.join(_fmt(row.get(key, '')) for key, _ in columns) + ' |')
  if notes:
    lines += ['', notes]
  text = '\n'.join(lines) + '\n'
  files.atomic_write(stem + '.md', text.encode())
  return text


def scatter(points: list[tuple[str, float, float]], xlabel: str, ylabel: str, path: str,
            title: str = '', groups: dict[str, str] | None = None):
  """Scatter plot, one numbered point per row (e.g. WER against FLOPs per frame); the legend
  maps numbers to row names, so labels of nearby points do not overprint. `groups` (row ->
  group name) gives each group its own marker, named in the legend."""
  markers = {}
  columns = 1 if len(points) <= 24 else 2
  fig, ax = plt.subplots(figsize=(6 + 3.3 * columns, 5.2))   # the plot keeps ~5 in. of width
  for i, (label, x, y) in enumerate(points, 1):
    group = (groups or {}).get(label, '')
    marker = markers.setdefault(group, 'osD^v<>'[len(markers) % 7])
    ax.scatter([x], [y], marker=marker, label=f'{i}  {label}' + (f' ({group})' if group else ''))
    ax.annotate(str(i), (x, y), textcoords='offset points', xytext=(4, 3), fontsize=7)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6.5, loc='upper left', bbox_to_anchor=(1.01, 1.0), frameon=False,
            ncol=columns)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


def lines(series: dict[str, tuple[list, list]], xlabel: str, ylabel: str, path: str,
          title: str = '', logx: bool = False):
  fig, ax = plt.subplots(figsize=(6, 4))
  for label, (xs, ys) in series.items():
    ax.plot(xs, ys, marker='o', label=label)
  if logx:
    ax.set_xscale('log')
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


def learning_curves(workdir: str) -> str | None:
  """`workdir/learning_curve.png`: WER and CER of every evaluated split against training wall
  minutes, from metrics.jsonl's eval records (None when there are none with a wall time)."""
  from asr import metric_writer  # pylint: disable=g-import-not-at-top
  evals = [r for r in metric_writer.read_metrics(workdir, 'eval') if 'wall_s' in r]
  if not evals:
    return None
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, metric in zip(axes, ('wer', 'cer')):
    keys = sorted({k for r in evals for k in r if k == metric or k.endswith('/' + metric)})
    for key in keys:
      points = [(r['wall_s'] / 60, 100 * r[key]) for r in evals if key in r]
      ax.plot(*zip(*points), marker='o', label=key.rsplit('/', 1)[0] if '/' in key else 'eval')
    ax.set_xlabel('training wall time (min)')
    ax.set_ylabel(f'{metric.upper()} %')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  path = os.path.join(workdir, 'learning_curve.png')
  _save(fig, path)
  plt.close(fig)
  return path


def compare_runs(runs: dict[str, str], minutes: list[float], stem: str) -> str:
  """Runs side by side at equal training wall time: for each run (name -> workdir) and minute
  mark, the WER/CER of every evaluated split at its last evaluation at or before that mark, then
  its last evaluation (`end`: equal steps when the runs share a schedule) (`stem.md`,
  `stem.csv`), and every run's curves in one plot (`stem.png`)."""
  from asr import metric_writer  # pylint: disable=g-import-not-at-top
  rows, series = [], {}
  for name, workdir in runs.items():
    evals = [r for r in metric_writer.read_metrics(workdir, 'eval') if 'wall_s' in r]
    if not evals:
      raise FileNotFoundError(f'{workdir}: no evaluation with a wall time in metrics.jsonl')
    splits = sorted({k.rsplit('/', 1)[0] for r in evals for k in r if k.endswith('/wer')})
    for split in splits:
      series[f'{name}: {split}'] = ([r['wall_s'] / 60 for r in evals],
                                    [100 * r[f'{split}/wer'] for r in evals])
    marks = [(mark, [r for r in evals if r['wall_s'] / 60 <= mark]) for mark in minutes]
    for mark, done in marks + [('end', evals)]:
      if not done:
        continue
      r = done[-1]
      row = {'run': name, 'minutes': mark, 'at': f'{r["wall_s"] / 60:.1f} min, step {r["step"]}'}
      for split in splits:
        row[f'{split} WER'] = 100 * r[f'{split}/wer']
        row[f'{split} CER'] = 100 * r[f'{split}/cer']
      if len(splits) == 2:
        row['CER ratio'] = row[f'{splits[0]} CER'] / row[f'{splits[1]} CER']
      rows.append(row)
  keys = list(dict.fromkeys(k for r in rows for k in r))
  text = write_table(rows, [(k, k) for k in keys], stem, 'Runs at equal training wall time',
                     'Each cell: the last evaluation at or before the minute mark (evaluation '
                     'time excluded from the wall time); `end`: the last evaluation.')
  lines(series, 'training wall time (min)', 'WER %', stem + '.png', 'WER against training time')
  return text


def routing_still(log_mel, route, branch_names, backlog_ms, frame_seconds: float, path: str,
                  title: str = ''):
  """The article's animation as a still: the spectrogram with each encoder frame coloured by
  the branch that processed it, and the backlog on the simulated device beneath."""
  fig, (top, mid, bottom) = plt.subplots(3, 1, figsize=(8, 5), sharex=True,
                                         gridspec_kw={'height_ratios': [3, 0.4, 1.5]})
  seconds = log_mel.shape[0] * 0.01
  top.imshow(log_mel.T, origin='lower', aspect='auto', extent=(0, seconds, 0, log_mel.shape[1]),
             cmap='magma')
  top.set_ylabel('mel bin')
  top.set_title(title)
  colors = plt.get_cmap('tab10')
  for t, k in enumerate(route):
    mid.axvspan(t * frame_seconds, (t + 1) * frame_seconds, color=colors(int(k)), lw=0)
  mid.set_yticks([])
  mid.set_ylabel('branch', rotation=0, ha='right')
  handles = [plt.Rectangle((0, 0), 1, 1, color=colors(i)) for i in range(len(branch_names))]
  mid.legend(handles, branch_names, loc='upper right', fontsize=7, ncol=len(branch_names))
  t = [(i + 1) * frame_seconds for i in range(len(backlog_ms))]
  bottom.plot(t, backlog_ms, color='black')
  bottom.set_ylabel('backlog (ms)')
  bottom.set_xlabel('time (s)')
  bottom.grid(alpha=0.3)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)
