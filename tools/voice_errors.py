"""A model's WER and CER per voice on a `voice_assistant` split: which voices the errors come from.

  python tools/voice_errors.py MODEL_DIR [SPLIT ...] [--utterances=N]
  python tools/voice_errors.py pretrained/base base_test base_test_seen

MODEL_DIR is a training workdir or an export (its own config.json is read). Each split (default:
the config's `data.eval_split`) is decoded greedily, every utterance unless `--utterances`
limits it to the first N, and scored per base voice (`engine/voice`, every speaker variant
derived from it pooled) with the utterance and word counts beside each row: a voice scored on
a few hundred words is a rough figure. The table goes to stdout as Markdown.
"""
import collections
import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from asr import evaluate  # pylint: disable=g-import-not-at-top,wrong-import-position
from asr import metrics  # pylint: disable=g-import-not-at-top,wrong-import-position
from asr import train as train_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import data as data_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments.configs import from_workdir  # pylint: disable=g-import-not-at-top,wrong-import-position


def base_voice(voice: str) -> str:
  """'flite/kal16/03' -> 'flite/kal16': the engine voice a speaker variant derives from."""
  return '/'.join(voice.split('/')[:2])


def voice_rows(rows: list[dict], voice_of: dict) -> list[dict]:
  """Evaluator rows (id, ref, hyp) -> one row per base voice (and 'all'): utterances, words,
  WER and CER in percent."""
  rates = collections.defaultdict(metrics.ErrorRate)
  for row in rows:
    if row['id'] not in voice_of:
      raise KeyError(f'utterance {row["id"]!r} has no voice in its source')
    for key in (base_voice(voice_of[row['id']]), 'all'):
      rates[key].update(row['ref'], row['hyp'])
  out = []
  for key in sorted(rates, key=lambda k: (k == 'all', k)):
    result = rates[key].result()
    out.append({'voice': key, 'utterances': int(result['utterances']),
                'words': int(result['words']), 'wer': 100 * float(result['wer']),
                'cer': 100 * float(result['cer'])})
  return out


def main(argv):
  args = [a for a in argv[1:] if not a.startswith('--')]
  limit = 0                        # the Evaluator's "every utterance"
  for a in argv[1:]:
    if a.startswith('--utterances='):
      limit = int(a.split('=', 1)[1])
    elif a.startswith('--'):
      sys.exit(f'voice_errors: unknown flag {a!r}\n{__doc__}')
  if not args:
    sys.exit(__doc__)
  model_dir, splits = args[0], args[1:]
  cfg = from_workdir.load(model_dir)
  if cfg.data.source != 'voice_assistant':
    sys.exit(f'voice_errors: {model_dir} was trained on data.source={cfg.data.source!r}; '
             'voices are known for voice_assistant only')
  model = models.build_model(cfg)
  evaluator = evaluate.Evaluator(model, cfg)
  variables = stats = None
  print(f'{model_dir}, greedy decoding\n')
  print('| split | voice | utterances | words | WER % | CER % |\n|---|---|---:|---:|---:|---:|')
  for split in splits or [cfg.data.eval_split]:
    with contextlib.redirect_stdout(sys.stderr):     # the corpus's own messages: not the table
      source = data_lib.source(cfg, split, log=lambda *_: None)
      voice_of = {e['id']: e['voice'] for e in source}
      dataset = data_lib.load_split(cfg, split, log=lambda *_: None)
    if variables is None:
      variables, stats = train_lib.load_trained(cfg, model_dir, model, dataset)
    _, rows = evaluator(variables, dataset, stats, limit=limit, return_rows=True)
    for row in voice_rows(rows, voice_of):
      print(f'| `{split}` | {row["voice"]} | {row["utterances"]} | {row["words"]} | '
            f'{row["wer"]:.1f} | {row["cer"]:.1f} |', flush=True)


if __name__ == '__main__':
  main(sys.argv)
