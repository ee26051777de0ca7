"""The AmNet table (the article's first half): one row per config argument.

Every row is the same encoder family: `full` and `full_continued` are dense single branches
(the second trained as long as the fine-tuned rows, the fair WER reference), `pruned` and
`factorized` single compressed branches, the `amnet_*` rows a slow dense and a fast compressed
branch with an arbitrator. Rows other than `full` start from a trained dense model (SVD / copy
initialisation), so run `full` first; the sweep runs every row in order and writes the table:

  python launch.py --sweep=experiments/sweeps/amnet_cpu.py --workdir=workdirs/amnet_cpu
  python launch.py --mode=report --sweep=experiments/sweeps/amnet_cpu.py \
      --workdir=workdirs/amnet_cpu

One row by hand:
  python launch.py --config=experiments/configs/amnet.py:amnet_sparse \
      --workdir=workdirs/amnet_cpu/amnet_sparse \
      --config.model.encoder.init_from=workdirs/amnet_cpu/full

Expected: RESULTS.md, "AmNet table (CPU)". The simulated device runs the full model at 1.5x
real time, so the full and static rows that do not keep up finish seconds after the speech.
"""
from experiments.configs import common

# Each row: the encoder's branches, and for routed rows the routing keys it changes. In the
# order the sweep trains them (the factorized rows need no pruning schedule).
ROWS = {
    'full': dict(branches='main:dense'),
    'full_continued': dict(branches='main:dense'),
    'amnet_mf': dict(branches='slow:dense,fast:factorized:0.1',
                     routing=dict(loss_variant='backlog', lambda_amr=40.0)),
    'factorized': dict(branches='main:factorized:0.5'),
    'amnet_sparse': dict(branches='slow:dense,fast:sparse:0.1',
                         routing=dict(loss_variant='backlog', lambda_amr=40.0)),
    'pruned': dict(branches='main:sparse:0.5'),
    # Without the latency term: what the RNN-T and cost terms alone make of the routing.
    'amnet_mf_nolat': dict(branches='slow:dense,fast:factorized:0.1',
                           routing=dict(loss_variant='none')),
    # A heavier one-sided 'backlog' term.
    'amnet_mf_amr200': dict(branches='slow:dense,fast:factorized:0.1',
                            routing=dict(loss_variant='backlog', lambda_amr=200.0)),
    'amnet_sparse_nolat': dict(branches='slow:dense,fast:sparse:0.1',
                               routing=dict(loss_variant='none')),
    # The two-sided term also penalises slow routing while the device is behind, so the
    # routing holds the backlog near the threshold.
    'amnet_mf_2sided': dict(branches='slow:dense,fast:factorized:0.1',
                            routing=dict(loss_variant='two_sided', lambda_amr=40.0)),
    # A rank-0.25 fast branch: fewer fast frames needed to keep up.
    'amnet_mf25_2sided': dict(branches='slow:dense,fast:factorized:0.25',
                              routing=dict(loss_variant='two_sided', lambda_amr=40.0)),
    # The threshold is the backlog the routing aims for: 30 ms aims at the p90 target.
    'amnet_mf_2sided_b30': dict(branches='slow:dense,fast:factorized:0.1',
                                routing=dict(loss_variant='two_sided', lambda_amr=40.0,
                                             backlog_threshold=0.03)),
    # The final-UPL term prices the last frames, where a slow frame alone exceeds the target.
    'amnet_mf_2sided_upl': dict(branches='slow:dense,fast:factorized:0.1',
                                routing=dict(loss_variant='two_sided_upl', lambda_amr=40.0)),
}
# Routing keys every routed row shares. The RNN-T loss is a per-utterance sum and the
# amortized terms are per-frame means, so the lambdas are large; with lambda_amr > lambda_cost
# the latency term outweighs the cost term at zero backlog (RESULTS.md, "Loss variants").
ROUTED = dict(lambda_cost=20.0, backlog_threshold=0.06, anneal_steps=600)


def get_config(row: str = 'full'):
  if row not in ROWS:
    raise ValueError(f'amnet.py: unknown row {row!r}; one of {sorted(ROWS)}')
  c = common.base_config()
  # `full`'s base domain (9.8 h): on `small`'s 0.87 h the RNN-T never left the LM-only solution.
  c.data.corpus = 'full'
  c.model.encoder.layers = 3
  c.model.encoder.units = 192
  c.model.encoder.branches = ROWS[row]['branches']
  c.model.encoder.prune_epochs = 1             # an epoch of `full` base_train is 750 steps
  if 'routing' in ROWS[row]:
    c.model.encoder.routing.update(dict(ROUTED, **ROWS[row]['routing']))
  c.model.pred_embed_dim = 32
  c.model.pred_units = 128
  c.model.joint_dim = 128
  c.train.batch_size = 16
  c.train.steps = 3000
  c.train.eval_every = 3000
  c.train.checkpoint_every = 250
  if row != 'full':                            # fine-tuning from the full model
    c.train.steps = 1000
    c.train.eval_every = 1000
    c.train.warmup_steps = 100
  c.eval.max_utterances = 400                  # the first 400 of 800 held-out-voice utterances
  return c
