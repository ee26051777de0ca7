"""The base recognizer: a dense 3 x LSTM-192 RNN-T with a CTC head on `full`'s base domain.

  make base     # = python launch.py --config=experiments/configs/base.py --workdir=workdirs/base
  python launch.py --config=experiments/configs/base.py --workdir=workdirs/base --mode=export \
      --export_dir=pretrained/base

Batches hold about `data.batch_seconds` of audio (short utterances in larger batches), label
padding stops at each bucket's longest label, and the train split's log-mel is computed once.
Both base-domain test splits are scored during training: `base_test` (held-out voices) and
`base_test_seen` (training voices, unseen sentences); `learning_curve.png` plots them against
training wall time. `pretrained/base` is this recipe's model. Expected: RESULTS.md, "The base
recognizer".

`base.py:levers` is the same model with the throughput and voice levers: 60 ms encoder frames
(6 x 10 ms stacked) with a CTC head of two outputs per frame, the RNN-T joint pruned to 5 label
positions per frame, and each training utterance's mel axis warped by a random vocal-tract
factor in [0.9, 1.1]. It trains about 2.8x as many audio seconds per second, but in the one run
so far (8,500 steps, its schedule shortened while it ran) it ended 2.8 points of held-out WER
behind this recipe (RESULTS.md, "The base recognizer": "The levers"), so it is not the shipped
model; its parameters differ in layout (480-dim input, the simple joint).
  python launch.py --config=experiments/configs/base.py:levers --workdir=workdirs/base_levers
"""
from experiments.configs import common


def get_config(variant: str = ''):
  if variant not in ('', 'levers'):
    raise ValueError(f'base.py: unknown variant {variant!r}; "" or levers')
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
  c.train.steps = 4500
  c.train.lr = 5e-3
  c.train.warmup_steps = 200
  c.train.eval_every = 500
  c.train.checkpoint_every = 250
  c.train.log_every = 25
  c.eval.max_utterances = 300
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
