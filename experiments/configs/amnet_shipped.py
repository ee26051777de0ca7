"""The AmNet table on the shipped base: every row starts from `pretrained/base` (SVD / copy
initialisation) and is fine-tuned on `full`'s base domain with the base recipe's batches
(experiments/configs/base.py: about 120 s of audio per step from nine length buckets), for
300 steps, a little under one epoch. The dense row `full_continued` is fine-tuned as long: the
fair WER reference. Run the whole table with its sweep:

  python launch.py --sweep=experiments/sweeps/amnet_shipped.py --workdir=workdirs/amnet_shipped
  python launch.py --mode=report --sweep=experiments/sweeps/amnet_shipped.py \
      --workdir=workdirs/amnet_shipped

One row by hand:
  python launch.py --config=experiments/configs/amnet_shipped.py:amnet_mf_2sided_upl \
      --workdir=workdirs/amnet_shipped/amnet_mf_2sided_upl

Sparse branches: an epoch is 330 steps, so 300 steps are one pruning round: the masks are cut to
the budget by magnitude at step 0 and the rest trains with them fixed (one-shot pruning, not
the gradual schedule of the longer CPU table); experiments/sweeps/amnet_shipped_gradual.py
prunes them gradually in rounds of 25 steps instead (`model.encoder.prune_every`).

Expected: RESULTS.md, "Amortized networks on the shipped base".
"""
from experiments.configs import amnet
from experiments.configs import base

PRETRAINED = 'pretrained/base'


def get_config(row: str = 'full_continued'):
  if row not in amnet.ROWS or row == 'full':
    raise ValueError(f'amnet_shipped.py: unknown row {row!r}; one of '
                     f'{sorted(set(amnet.ROWS) - {"full"})} (the `full` row is {PRETRAINED})')
  c = base.get_config()
  c.data.extra_eval_splits = ''
  spec = amnet.ROWS[row]
  c.model.encoder.branches = spec['branches']
  c.model.encoder.init_from = PRETRAINED
  c.model.encoder.prune_epochs = 1         # capped at 0 by 300 steps < one epoch: one cut
  if 'routing' in spec:
    c.model.encoder.routing.update(dict(amnet.ROUTED, **spec['routing']))
    c.model.encoder.routing.anneal_steps = 200
  c.train.steps = 300
  c.train.lr = 1e-3
  c.train.warmup_steps = 20
  c.train.eval_every = 300
  c.train.checkpoint_every = 100
  c.eval.max_utterances = 300              # the model card's 300 held-out-voice utterances
  return c
