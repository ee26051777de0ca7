"""The neural-diff table (the article's second half): five consecutive updates per method.

A base RNN-T is trained on the `base` domain; then every method runs its own chain of updates
on `update_1` ... `update_5` (each with a replay sample of earlier domains), shipping each update
as a package that the device applies. Budgets are fractions of the full model's package bytes.

  python launch.py --config=experiments/configs/diffs.py --workdir=workdirs/diffs_small \
      --mode=diffs

Expected (RESULTS.md has the measured figures and machine): sparse diffs near full fine-tuning
at 10% and within a few percent at 2%, ahead of "fine-tune then compress" (topk) at every
budget; hashed and low-rank reported beside them; base-domain WER shows the forgetting.
"""
import ml_collections

from experiments.configs import base as base_config
from experiments.configs import common


def get_config(size: str = 'small'):
  if size not in ('tiny', 'small', 'cpu', 'full', 'shipped', 'shipped_amnet'):
    raise ValueError(f'diffs.py: unknown size {size!r}; one of tiny, small, cpu, full, shipped, '
                     'shipped_amnet')
  if size == 'shipped':
    return _on_the_shipped_base()
  if size == 'shipped_amnet':
    return _on_the_shipped_amnet()
  c = common.base_config()
  c.data.corpus = size
  c.model.encoder.layers = 2
  c.model.encoder.units = 160
  c.model.pred_units = 96
  c.model.joint_dim = 96
  c.train.steps = 2500                 # the base model
  c.train.batch_size = 16
  c.train.eval_every = 2500
  c.train.checkpoint_every = 250
  c.eval.max_utterances = 0
  c.diffs = ml_collections.ConfigDict()
  c.diffs.methods = 'sparse,hashed,lowrank,topk,full'
  c.diffs.budgets = '0.01,0.02,0.05,0.1'   # fractions of the full model's package bytes
  c.diffs.updates = 5
  c.diffs.steps_per_update = 400
  c.diffs.lr = 1e-3
  # Per-method rates, 'sparse=1e-2,full=3e-3'; a method not named trains at diffs.lr.
  c.diffs.lrs = ''
  c.diffs.warmup_steps = 20
  c.diffs.prune_every = 0              # steps per pruning round of the sparse diff; 0 = an epoch
  c.diffs.prune_rounds = 2             # rounds from dense to the budget; the rest fine-tune
  c.diffs.replay_fraction = 0.5        # replay examples per new example, from earlier domains
  # fp16 | int8. Budgets are fractions of the full model at this precision. For the CPU model
  # of RESULTS.md int8's is 42% of fp16's bytes, so 10% of the fp16 model is 0.2388 at int8.
  c.diffs.value_dtype = 'fp16'
  c.diffs.min_ndim = 1                 # 1: biases get deltas too; 2: matrices only
  c.diffs.base_workdir = ''            # reuse a trained base model instead of training one
  c.diffs.eval_utterances = 0          # per test split; 0 = all
  # `test`: held-out voices, the table's figures. `test_seen`: training voices and sentences in
  # no train split, where settings such as the learning rate are chosen without the test split.
  c.diffs.eval_split = 'test'
  # Which entries the sparse diff trains: `magnitude` prunes the delta toward the budget over
  # `prune_rounds` rounds; `fisher` fixes the mask before the first step by squared gradients
  # over the update's first `fisher_batches` batches (diffs/fisher.py).
  c.diffs.sparse_mask = 'magnitude'
  c.diffs.fisher_batches = 8
  # The maker's Ed25519 private key (PEM; `python -m diffs.cli keygen`) that signs the packages.
  # Empty: each chain signs with a chain-local maker key, `chains/<chain>/maker.key` in the
  # workdir, made on first use; it proves only that the packages came from this run.
  c.diffs.signing_key = ''
  # The generic binary-delta baseline (zstd -19, bsdiff4) beside every update; off where time is
  # short (tools/gpu_oneshot.sh): it costs minutes per update at paper size.
  c.diffs.binary_delta = True
  if size == 'full':                   # GPU-sized (make reproduce)
    c.model.encoder.layers = 4
    c.model.encoder.units = 320
    c.model.pred_units = 256
    c.model.joint_dim = 256
    c.train.batch_size = 32
    c.train.steps = 20000
    c.diffs.steps_per_update = 2000
    c.diffs.prune_rounds = 3
  if size == 'cpu':                    # CPU-sized, on the AmNet table's trained full model
    # python launch.py --config=experiments/configs/diffs.py:cpu --workdir=workdirs/diffs_cpu5_all \
    #     --mode=diffs --config.diffs.base_workdir=workdirs/amnet_cpu/full_continued
    # RESULTS.md, "Neural diffs, CPU-sized model, five updates, four budgets" (about 2.5 h on
    # 2 cores; learning rates per method: "Learning rates chosen on `test_seen`").
    c.data.corpus = 'full'
    c.model.encoder.layers = 3
    c.model.encoder.units = 192
    c.model.pred_units = 128
    c.model.joint_dim = 128
    c.train.steps = 3000
    c.diffs.methods = 'sparse,topk,hashed,lowrank,full'
    c.diffs.updates = 5
    # An update's epoch is 141 steps: pruning once an epoch would be one cut, nearly "fine-tune
    # then compress" (topk). Rounds of 15 steps reach the budget at step 120, then 60 steps
    # train with the mask fixed.
    c.diffs.steps_per_update = 180
    c.diffs.replay_fraction = 0.25
    c.diffs.prune_every = 15
    c.diffs.prune_rounds = 8
    c.diffs.eval_utterances = 150
  if size == 'tiny':
    c.train.steps = 60
    c.diffs.updates = 2
    c.diffs.steps_per_update = 10
    c.diffs.budgets = '0.1'
  return c


def _on_the_shipped_base():
  """The chains from `pretrained/base` (configs/base.py's model and frontend, trained on
  `full`'s base domain) over `full`'s five update domains, with the `cpu` chain's schedule:
  every method at 1%, 2%, 5% and 10% of the model's bytes (16 chains: low-rank does not fit in
  1%; 14–25 min each on 2 idle cores, evaluation included), one table, and `diffs_summary.md`
  with a line per chain (RESULTS.md, "Every budget, one line per chain").

    python launch.py --config=experiments/configs/diffs.py:shipped \
        --workdir=workdirs/diffs_shipped/all --mode=diffs [--config.diffs.budgets=0.02,0.1]

  The rates: 1e-2 for sparse and for full fine-tuning, chosen on the 2026-12-01 base's
  `test_seen` (RESULTS.md, "Learning rates chosen on the 2026-12-01 base's `test_seen`"); 3e-3
  for topk, which fine-tunes the whole model before it compresses, full fine-tuning's rate on
  the earlier CPU base's `test_seen`; hashed 1e-2 and low-rank 3e-2, each chosen at 2% on this
  base's `test_seen` over the first two updates (RESULTS.md, "Rates for hashed and low-rank on
  `test_seen`"). A grid,
  one chain per rate, writes the choice to `lr_choice_test_seen.md`; then the same command with
  `eval_split=test` gives the figures:

    python launch.py --config=experiments/configs/diffs.py:shipped --mode=diffs \
        --workdir=workdirs/diffs_shipped/lr --config.diffs.methods=sparse,full \
        --config.diffs.budgets=0.1 --config.diffs.eval_split=test_seen \
        '--config.diffs.lrs=sparse=3e-3|1e-2|3e-2,full=1e-3|3e-3|1e-2'

  RESULTS.md, "Neural diffs on the shipped base".
  """
  c = base_config.get_config()
  c.data.extra_eval_splits = ''
  c.diffs = ml_collections.ConfigDict(get_config('cpu').diffs.to_dict())
  c.diffs.base_workdir = 'pretrained/base'
  c.diffs.budgets = '0.01,0.02,0.05,0.1'
  c.diffs.lr = 1e-2
  c.diffs.lrs = 'topk=3e-3,lowrank=3e-2,full=1e-2'
  return c


AMNET_ROW = 'workdirs/amnet_shipped/amnet_mf25_2sided_upl'


def _on_the_shipped_amnet():
  """The sparse 10% chain over an AmNet: the shipped table's AmNet-MF (dense slow branch, rank-
  0.25 factorized fast branch, arbitrator, two-sided latency term + final UPL), its whole
  pytree diffed, the arbitrator included; each update trains with the row's routing loss at
  its deployed temperature, and the table adds the new domain's branch shares, FLOPs and UPL.
  Train the row first (experiments/sweeps/amnet_shipped.py), then:

    python launch.py --mode=diffs --config=experiments/configs/diffs.py:shipped_amnet \
        --workdir=workdirs/diffs_shipped/amnet_sparse_lr1e-2

  RESULTS.md, "Diffs of an AmNet".
  """
  from experiments.configs import amnet_shipped  # pylint: disable=g-import-not-at-top
  c = amnet_shipped.get_config('amnet_mf_2sided_upl')
  c.model.encoder.branches = 'slow:dense,fast:factorized:0.25'
  c.model.encoder.init_from = ''
  c.diffs = ml_collections.ConfigDict(get_config('cpu').diffs.to_dict())
  c.diffs.base_workdir = AMNET_ROW
  c.diffs.methods = 'sparse'
  c.diffs.budgets = '0.1'
  c.diffs.lr = 1e-2          # sparse 10%'s rate on `test_seen` ("Learning rates chosen ...")
  return c
