"""`make demo`: both halves of the article at tiny sizes on the `small` corpus, on a CPU.

Rows: full (a dense single branch), factorized (a static compressed baseline at half the
FLOPs), amnet (slow dense + fast sparse branch, latency-aware loss), amnet_nolat (the same
without the latency term) and, for the diffs, the
full model as the deployed base with two consecutive sparse-diff updates at a 10% budget.

  make demo            # = python launch.py --mode=demo --workdir=workdirs/demo

Expected: both tables printed and `workdirs/demo/report.md` written in about 20 minutes on two
CPU cores (figures: RESULTS.md); WERs are high at this size, the point is the whole pipeline.
"""
import ml_collections

from experiments.configs import amnet
from experiments.configs import diffs


def _shrink(c):
  c.data.corpus = 'small'
  c.model.encoder.layers = 2
  c.model.encoder.units = 128
  c.model.pred_units = 64
  c.model.joint_dim = 64
  c.train.batch_size = 16
  c.train.eval_every = 100000
  c.train.checkpoint_every = 100
  c.eval.max_utterances = 200
  return c


def get_config(row: str = 'full'):
  if row == 'diffs':
    c = _shrink(diffs.get_config('small'))
    full = get_config('full')
    c.model = ml_collections.ConfigDict(full.model.to_dict())   # the deployed base: `full`
    c.train.steps = full.train.steps
    c.diffs.methods = 'sparse'
    c.diffs.budgets = '0.1'
    c.diffs.updates = 2
    c.diffs.steps_per_update = 150
    c.diffs.prune_rounds = 1
    return c
  source = {'full': 'full', 'factorized': 'factorized', 'amnet': 'amnet_sparse',
            'amnet_nolat': 'amnet_sparse_nolat'}
  if row not in source:
    raise ValueError(f'demo.py: unknown row {row!r}; one of {sorted(source) + ["diffs"]}')
  c = _shrink(amnet.get_config(source[row]))
  c.train.steps = 600 if row == 'full' else 300
  c.train.warmup_steps = 50 if row == 'full' else 20
  if row.startswith('amnet'):
    c.model.encoder.routing.anneal_steps = 200
  c.model.encoder.prune_epochs = 1
  return c
