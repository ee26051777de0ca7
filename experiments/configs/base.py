"""The base recognizer: a dense 3 x LSTM-192 RNN-T with a CTC head on `full`'s base domain.

  make base     # = python launch.py --config=experiments/configs/base.py --workdir=workdirs/base
  python launch.py --config=experiments/configs/base.py --workdir=workdirs/base --mode=export \
      --export_dir=pretrained/base

Batches hold about `data.batch_seconds` of audio (short utterances in larger batches), label
padding stops at each bucket's longest label, and the train split's log-mel is computed once.
Each log-mel frame has its utterance's running mean so far taken off (`frontend.causal_cmn`, what
a stream can compute), and the RNN-T joint runs on 5 label positions per frame chosen by a simple
additive joint (`model.prune_range`). These are the two levers that paid at equal training time
(RESULTS.md, "Each lever alone"). Both base-domain test splits are scored during training:
`base_test` (held-out voices) and `base_test_seen` (training voices, unseen sentences);
`learning_curve.png` plots them against training wall time. `pretrained/base` is this recipe's
model. Expected: RESULTS.md, "The base recognizer".

Variants, each the record of an earlier run:
  full_joint  the recipe of 2026-12-01 (no mean normalisation, the joint at every cell, 4,500
              steps): the base that shipped before, and the `recipe` row of
              experiments/sweeps/base_levers.py.
  levers      full_joint with 60 ms encoder frames (6 x 10 ms stacked, two CTC outputs per
              frame), the pruned joint and vocal-tract-length perturbation in [0.9, 1.1]: 2.8x
              the audio per second, 2.8 points of held-out WER behind full_joint after 8,500
              steps (RESULTS.md, "The levers").
  python launch.py --config=experiments/configs/base.py:levers --workdir=workdirs/base_levers
"""
from experiments.configs import common

VARIANTS = ('', 'full_joint', 'levers')


def get_config(variant: str = ''):
  if variant not in VARIANTS:
    raise ValueError(f'base.py: unknown variant {variant!r}; one of {VARIANTS}')
  c = common.base_config()
  c.data.corpus = 'full'
  c.data.bucket_seconds = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0)
  c.data.batch_seconds = 120.0
  c.data.extra_eval_splits = 'base_test_seen'
  c.model.encoder.layers = 3
  c.model.encoder.units = 192
  c.model.pred_embed_dim = 32
  c.model.pred_units = 128
  c.model.joint_dim = 128
  c.train.lr = 5e-3
  c.train.log_every = 25
  c.eval.max_utterances = 300
  if not variant:
    c.frontend.causal_cmn = True
    c.model.prune_range = 5
    c.train.steps = 8000
    c.train.warmup_steps = 300
    c.train.eval_every = 1000
    c.train.checkpoint_every = 500
    return c
  c.train.steps = 4500
  c.train.warmup_steps = 200
  c.train.eval_every = 500
  c.train.checkpoint_every = 250
  if variant == 'levers':
    c.frontend.stack = 6
    c.frontend.stride = 6
    c.frontend.vtlp_warp = 0.1
    c.model.ctc_upsample = 2
    c.model.prune_range = 5
    c.train.steps = 8500
    c.train.warmup_steps = 500
    c.train.eval_every = 1500
    c.train.checkpoint_every = 500
  return c
