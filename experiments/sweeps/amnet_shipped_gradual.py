"""One-shot against gradual pruning for the shipped table's sparse rows (groups of 32 output
columns). Its rows are 300 steps, less than the 330-step epoch, so the shipped sweep's epoch
rounds cut the masks to the budget at step 0; here the masks fall along the cubic schedule in 8
rounds of 25 steps (`model.encoder.prune_every`), at the budget from step 200, 100 steps fixed.
The one-shot rows are the shipped sweep's own workdirs, reported again beside these.

  python launch.py --sweep=experiments/sweeps/amnet_shipped.py --workdir=workdirs/amnet_shipped
  python launch.py --sweep=experiments/sweeps/amnet_shipped_gradual.py \
      --workdir=workdirs/amnet_shipped_gradual
  python launch.py --mode=report --sweep=experiments/sweeps/amnet_shipped_gradual.py \
      --workdir=workdirs/amnet_shipped_gradual

Measured: RESULTS.md, "Gradual pruning inside 300 steps".
"""
CONFIG = 'experiments/configs/amnet_shipped.py'
UPL = 'amnet_mf_2sided_upl'
ONE_SHOT = 'workdirs/amnet_shipped'
GROUPS = {'model.encoder.sparse_group': 32}
GRADUAL = {**GROUPS, 'model.encoder.prune_every': 25, 'model.encoder.prune_epochs': 8}
SPARSE_AMNET = {'model.encoder.branches': 'slow:dense,fast:sparse:0.1'}


def get_sweep(root: str):
  del root
  points = [
      dict(name='full', config=f'{CONFIG}:full_continued', workdir='pretrained/base'),
      dict(name='pruned50_g32', config=f'{CONFIG}:pruned', overrides=GROUPS,
           workdir=f'{ONE_SHOT}/pruned50_g32'),
      dict(name='pruned50_g32_gradual', config=f'{CONFIG}:pruned', overrides=GRADUAL),
      dict(name='amnet_sparse_g32', config=f'{CONFIG}:{UPL}',
           overrides={**SPARSE_AMNET, **GROUPS}, workdir=f'{ONE_SHOT}/amnet_sparse_g32'),
      dict(name='amnet_sparse_g32_gradual', config=f'{CONFIG}:{UPL}',
           overrides={**SPARSE_AMNET, **GRADUAL}),
  ]
  return dict(report='amnet', points=points, routing_row='amnet_sparse_g32_gradual',
              stream_utterances=8)
