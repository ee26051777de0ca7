"""The paper-size run for a GPU lent for minutes: `tools/gpu_oneshot.sh` (README, "Running on a
GPU"). One config per row; `ROW@mini` is the same row at the size of the CPU miniature (the
`tiny` corpus, 2 x LSTM-32, a few steps), which runs the script's code path here.

  base                  the dense base: configs/base.py:levers (60 ms frames, pruned joint,
                        VTLP, CTC head) at paper size, 5 x LSTM-640, predictor and joint 320;
                        the levers, not the shipped 30 ms recipe, because on a GPU the step
                        costs about its number of sequential frames, and 60 ms halves them
  amnet_mf_2sided_upl   configs/amnet.py's row (slow dense + rank-0.1 factorized fast branch,
                        two-sided latency term plus the final-UPL term), ROUTED routing
  factorized            one encoder factorized at rank 0.38: the FLOPs the CPU table's rank-0.1
                        AmNet spent (RESULTS.md), the static model at matched FLOPs
  amnet_sparse          slow dense + 10% pruned fast branch, backlog term
  diffs                 five updates: a sparse diff at 10% beside full fine-tuning

Every row but `base` starts from the base's export (`model.encoder.init_from`, or
`diffs.base_workdir`, set by the script). Step budgets come from step times measured on one
H100 (README "Performance"): the paper-size RNN-T step took 34 ms for 32 x 6 s at 30 ms frames
(200 sequential frames) and the AmNet step 105 ms for 32 x 8 s (267 frames). The LSTM scans are
latency-bound at these batches, so a step costs about its frame count: at 60 ms frames an 8 s
bucket is 133 frames, about 25 ms dense and 55 ms routed, and a batch of 240 s of audio costs
little more than one of 120 s. Hence: base 4,000 steps (about 2 min plus compilation), rows 800
(under a minute each), updates of 100 steps. `train.deadline`, set by the script from the end of
its stage, stops a row early if these estimates are wrong.
"""
import ml_collections

from experiments.configs import amnet
from experiments.configs import base as base_config
from experiments.configs import diffs as diffs_config

ROWS = ('base', 'amnet_mf_2sided_upl', 'factorized', 'amnet_sparse', 'diffs')
# What each fine-tuned row takes from configs/amnet.py: its ROWS entry, and the branches where
# they differ from it.
AMNET_ROWS = {'amnet_mf_2sided_upl': ('amnet_mf_2sided_upl', None),
              'factorized': ('factorized', 'main:factorized:0.38'),
              'amnet_sparse': ('amnet_sparse', None)}
SIZES = ('paper', 'mini')


def _base(size: str) -> ml_collections.ConfigDict:
  c = base_config.get_config('levers')
  # The simulated device stays as in every CPU table, the full model at 1.5x real time: at
  # 60 ms frames this encoder needs 32 MFLOP a frame, 0.53 GFLOP/s, so the article's 650 MFLOP/s
  # device would run it faster than real time and leave no backlog to route around.
  if size == 'paper':
    c.model.encoder.layers = 5
    c.model.encoder.units = 640
    c.model.pred_units = 320
    c.model.joint_dim = 320
    # Three buckets, not base.py's nine: each one compiles (10-35 s at this size on a GPU).
    c.data.bucket_seconds = (3.0, 5.0, 8.0)
    c.data.batch_seconds = 240.0
    c.train.steps = 4000
    c.train.warmup_steps = 300
    c.train.eval_every = 1000
    c.train.checkpoint_every = 1000
    c.train.log_every = 50
    c.eval.batch_size = 64
    c.eval.max_utterances = 200
  else:                                   # the CPU miniature: tools/gpu_oneshot.sh --miniature
    c.data.corpus = 'tiny'
    c.data.bucket_seconds = (2.0, 4.0)
    c.data.batch_seconds = 24.0
    c.data.stats_utterances = 40
    c.model.encoder.layers = 2
    c.model.encoder.units = 32
    c.model.pred_units = 32
    c.model.joint_dim = 32
    c.train.steps = 16
    c.train.warmup_steps = 4
    c.train.eval_every = 8
    c.train.checkpoint_every = 8
    c.train.log_every = 5
    c.eval.max_utterances = 8
  return c


def _fine_tuned(row: str, size: str) -> ml_collections.ConfigDict:
  c = _base(size)
  source, branches = AMNET_ROWS[row]
  spec = amnet.ROWS[source]
  c.model.encoder.branches = branches or spec['branches']
  steps = 800 if size == 'paper' else 6
  c.train.steps = steps
  c.train.warmup_steps = steps // 10
  c.train.eval_every = steps
  c.train.checkpoint_every = steps
  c.data.extra_eval_splits = ''           # the table's split alone, as configs/amnet.py
  if 'routing' in spec:
    c.model.encoder.routing.update(dict(amnet.ROUTED, **spec['routing']))
    # Annealed over 60% of the steps, as amnet.py's rows (600 of 1,000).
    c.model.encoder.routing.anneal_steps = max(1, int(0.6 * steps))
    if size == 'paper':
      c.model.encoder.routing.arbitrator_hidden = 64    # the paper sweep's (sweeps/amnet_full.py)
  c.model.encoder.prune_epochs = 2        # 147 steps an epoch at 240 s batches: pruned by 300
  if size == 'paper':
    # One bucket: a routed model compiles for 30 s per shape, longer than its whole training
    # at a second bucket's saving.
    c.data.bucket_seconds = (8.0,)
    c.eval.max_utterances = 400           # as configs/amnet.py: 400 of base_test's 800
  else:
    c.data.bucket_seconds = (4.0,)
  return c


def _diffs(size: str) -> ml_collections.ConfigDict:
  c = _base(size)
  d = diffs_config.get_config('full' if size == 'paper' else 'tiny')
  c.diffs = ml_collections.ConfigDict(d.diffs.to_dict())
  c.diffs.methods = 'sparse,full'
  c.diffs.budgets = '0.1'
  c.diffs.binary_delta = False            # minutes per update at 67 MB (diffs/chain.py)
  c.diffs.replay_fraction = 0.25
  c.data.extra_eval_splits = ''
  if size == 'paper':
    c.data.bucket_seconds = (8.0,)        # one compile per method
    c.diffs.updates = 5
    c.diffs.steps_per_update = 100
    c.diffs.prune_every = 10              # pruned to the budget by step 60, then 40 fixed
    c.diffs.prune_rounds = 6
    c.diffs.eval_utterances = 100
  else:
    c.data.bucket_seconds = (4.0,)
    c.diffs.updates = 2                   # tiny has two update domains
    c.diffs.steps_per_update = 4
    c.diffs.prune_every = 2
    c.diffs.prune_rounds = 1
    c.diffs.eval_utterances = 8
  # A unix time after which no update starts (the script sets it from its stage's end).
  c.diffs.deadline = 0.0
  return c


def get_config(arg: str = 'base'):
  row, _, size = arg.partition('@')
  size = size or 'paper'
  if row not in ROWS or size not in SIZES:
    raise ValueError(f'gpu.py: unknown row {arg!r}; one of {list(ROWS)}, each with an optional '
                     f'@mini')
  if row == 'base':
    return _base(size)
  if row == 'diffs':
    return _diffs(size)
  return _fine_tuned(row, size)
