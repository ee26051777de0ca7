"""The summary that tools/gpu_oneshot.sh writes after every step: what a GPU run finished.

  python -m experiments.oneshot WORKDIR STAGE     # Markdown on stdout

Reads only files (metrics.jsonl, train_summary.json, the corpus metadata, the script's
steps.txt), no JAX: it runs in the seconds a stage has left, and on a run cut at any point.
"""
import glob
import json
import os
import statistics
import sys


def _read_jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    out = []
    for line in f:
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:     # a line cut by the stage's timeout
        pass
    return out


def run_row(name: str, workdir: str) -> dict | None:
  """One training run's figures from its workdir, or None before its first record."""
  records = _read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  train = [r for r in records if r.get('kind') == 'train']
  evals = [r for r in records if r.get('kind') == 'eval']
  if not train:
    return None
  summary = {}
  path = os.path.join(workdir, 'train_summary.json')
  if os.path.exists(path):
    with open(path) as f:
      summary = json.load(f)
  config = {}
  if os.path.exists(os.path.join(workdir, 'config.json')):
    with open(os.path.join(workdir, 'config.json')) as f:
      config = json.load(f)
  # The first record's rate includes compilation; the rest are the steady state.
  rates = [r['steps_per_s'] for r in train[1:] if 'steps_per_s' in r] or [
      train[0].get('steps_per_s', float('nan'))]
  audio = [r['audio_s_per_s'] for r in train[1:] if 'audio_s_per_s' in r]
  last_eval = evals[-1] if evals else {}
  wers = {k[:-len('/wer')] if k.endswith('/wer') else 'eval': 100 * v
          for k, v in last_eval.items() if k == 'wer' or k.endswith('/wer')}
  if not summary:
    status = 'running or cut (no train_summary.json)'
  else:
    status = summary.get('stopped_early') or 'finished'
  return {'name': name, 'branches': config.get('model', {}).get('encoder', {}).get('branches', ''),
          'steps': train[-1]['step'],
          'planned': config.get('train', {}).get('steps', ''),
          'minutes': train[-1].get('wall_s', 0.0) / 60,
          'steps_per_s': statistics.median(rates),
          'audio_s_per_s': statistics.median(audio) if audio else float('nan'),
          'loss': train[-1].get('loss', float('nan')),
          'wer': wers, 'eval_step': last_eval.get('step'), 'status': status}


def corpus_lines(data_dir: str) -> list[str]:
  lines = []
  for path in sorted(glob.glob(os.path.join(data_dir, 'voice_assistant', '*', '*',
                                            'metadata.json'))):
    with open(path) as f:
      meta = json.load(f)
    hours = sum(meta.get('hours', {}).get('split', {}).values())
    utterances = sum(meta.get('utterances', {}).values())
    lines.append(f'- corpus `{meta.get("config")}`: {utterances} utterances, {hours:.2f} h; '
                 f'engines {meta.get("engines")}, missing {meta.get("engines_missing", "?")}, '
                 f'from {meta.get("engine_source", "?")}; text sources '
                 f'{meta.get("text_sources")}')
  return lines


def _fmt(value, digits=3) -> str:
  if isinstance(value, float):
    return 'n/a' if value != value else f'{value:.{digits}g}'
  return str(value)


def summary(workdir: str, stage: str) -> str:
  lines = [f'# GPU one-shot: stage `{stage}`', '']
  lines += corpus_lines(os.path.join(workdir, 'tfds'))
  runs = [(name, os.path.join(workdir, name)) for name in ('base', 'base_rows')]
  runs += [(os.path.basename(p), p) for p in sorted(glob.glob(os.path.join(workdir, 'amnet', '*')))
           if os.path.isdir(p)]
  runs += [(f'diffs/{os.path.relpath(p, os.path.join(workdir, "diffs", "chains"))}', p)
           for p in sorted(glob.glob(os.path.join(workdir, 'diffs', 'chains', '*', '*', 'train')))]
  rows = [r for r in (run_row(name, path) for name, path in runs) if r]
  if rows:
    lines += ['', '| run | branches | steps / planned | train min | steps/s | audio s/s | loss | '
              'WER % (split) | status |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
      wer = ', '.join(f'{v:.2f} ({k})' for k, v in sorted(r['wer'].items())) or '-'
      lines.append(f'| {r["name"]} | {r["branches"]} | {r["steps"]} / {r["planned"]} | '
                   f'{r["minutes"]:.2f} | {_fmt(r["steps_per_s"])} | {_fmt(r["audio_s_per_s"])} | '
                   f'{_fmt(r["loss"], 4)} | {wer} | {r["status"]} |')
  lines.append('')
  for table in ('amnet/amnet_table.md', 'diffs/diffs_table.md'):
    if os.path.exists(os.path.join(workdir, table)):
      lines.append(f'- `{table}` written (in results_{stage}.tar.gz)')
  steps = os.path.join(workdir, f'results_{stage}', 'steps.txt')
  if os.path.exists(steps):
    with open(steps) as f:
      lines += ['', 'Steps of this stage (exit status, wall seconds, limit):', '']
      lines += [f'- {line.strip()}' for line in f if line.strip()]
  return '\n'.join(lines) + '\n'


def main(argv):
  if len(argv) != 3:
    sys.exit('usage: python -m experiments.oneshot WORKDIR STAGE')
  sys.stdout.write(summary(argv[1], argv[2]))


if __name__ == '__main__':
  main(sys.argv)
