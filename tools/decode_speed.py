"""Beam search against the greedy decoder: decoding seconds and WER on a model's test split.

  python tools/decode_speed.py MODEL_DIR [UTTERANCES] [BEAM_WIDTH ...]
  python tools/decode_speed.py pretrained/base 64 2 4 8

MODEL_DIR is a training workdir or an export (its own config.json is read). Each decoder runs
the same first UTTERANCES of `data.eval_split` in `eval.batch_size` batches twice: the first
pass compiles every shape (the greedy decoder per bucket, the beam's steps once per width), the
second is timed and reported, the encoder included, as one JSON line per decoder: seconds,
real-time factor, time against greedy, WER and CER. A figure, not a test: run it on an idle
machine.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from asr import evaluate  # pylint: disable=g-import-not-at-top,wrong-import-position
from asr import metrics  # pylint: disable=g-import-not-at-top,wrong-import-position
from asr import train as train_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import data as data_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments.configs import from_workdir  # pylint: disable=g-import-not-at-top,wrong-import-position


def run_pass(evaluator, variables, stats, dataset, limit):
  error_rate = metrics.ErrorRate()
  start = time.perf_counter()
  for batch, indices in dataset.eval_batches(evaluator.cfg.eval.batch_size, limit=limit):
    texts, _, _ = evaluator.transcribe_batch(variables, stats, batch)
    for i, hyp in zip(indices, texts):
      error_rate.update(dataset.transcripts[i], hyp)
  return time.perf_counter() - start, error_rate.result()


def main(argv):
  if len(argv) < 2:
    sys.exit(__doc__)
  model_dir = argv[1]
  limit = int(argv[2]) if len(argv) > 2 else 64
  widths = [int(w) for w in argv[3:]] or [4]
  cfg = from_workdir.load(model_dir)
  model = models.build_model(cfg)
  dataset = data_lib.load_split(cfg, cfg.data.eval_split, log=lambda *_: None)
  variables, stats = train_lib.load_trained(cfg, model_dir, model, dataset)
  audio = sum(a.size for a in dataset.audio[:limit]) / 16000
  greedy_seconds = None
  for width in [1] + widths:
    cfg.eval.beam_width = width
    evaluator = evaluate.Evaluator(model, cfg)
    run_pass(evaluator, variables, stats, dataset, limit)            # compiles
    seconds, rates = run_pass(evaluator, variables, stats, dataset, limit)
    greedy_seconds = greedy_seconds or seconds
    print(json.dumps({
        'decoder': 'greedy' if width == 1 else f'beam {width}', 'utterances': min(limit,
                                                                                len(dataset)),
        'audio_seconds': round(audio, 2), 'seconds': round(seconds, 3),
        'rtf': round(seconds / audio, 4), 'vs_greedy': round(seconds / greedy_seconds, 2),
        'wer': round(float(rates['wer']), 4), 'cer': round(float(rates['cer']), 4),
        'compilations': evaluator.traces, 'backend': jax.default_backend(),
        'batch_size': cfg.eval.batch_size}), flush=True)


if __name__ == '__main__':
  main(sys.argv)
