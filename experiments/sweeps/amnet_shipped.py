"""The AmNet table on the shipped base (experiments/configs/amnet_shipped.py): the base as the
`full` row, the dense model fine-tuned as long as the others, the static factorized curve at
four ranks and pruned at half the FLOPs, the AmNet rows with and without the latency terms, the
three-branch row, the grouped sparse branch, and a second seed of the decisive rows.

  python launch.py --sweep=experiments/sweeps/amnet_shipped.py --workdir=workdirs/amnet_shipped
  python launch.py --mode=report --sweep=experiments/sweeps/amnet_shipped.py \
      --workdir=workdirs/amnet_shipped

Measured: RESULTS.md, "Amortized networks on the shipped base".
"""
CONFIG = 'experiments/configs/amnet_shipped.py'
UPL = 'amnet_mf_2sided_upl'


def _branches(spec):
  return {'model.encoder.branches': spec}


def get_sweep(root: str):
  del root
  points = [
      dict(name='full', config=f'{CONFIG}:full_continued', workdir='pretrained/base'),
      dict(name='full_continued', config=f'{CONFIG}:full_continued'),
      dict(name='amnet_mf25_2sided_upl', config=f'{CONFIG}:{UPL}',
           overrides=_branches('slow:dense,fast:factorized:0.25')),
      dict(name='factorized50', config=f'{CONFIG}:factorized'),
      dict(name='factorized25', config=f'{CONFIG}:factorized',
           overrides=_branches('main:factorized:0.25')),
      dict(name=UPL, config=f'{CONFIG}:{UPL}'),
      dict(name='amnet_sparse_g32', config=f'{CONFIG}:{UPL}',
           overrides={**_branches('slow:dense,fast:sparse:0.1'),
                      'model.encoder.sparse_group': 32}),
      dict(name='factorized10', config=f'{CONFIG}:factorized',
           overrides=_branches('main:factorized:0.1')),
      dict(name='amnet_mf25_nolat', config=f'{CONFIG}:amnet_mf_nolat',
           overrides=_branches('slow:dense,fast:factorized:0.25')),
      dict(name='amnet_mf25_2sided_upl_seed1', config=f'{CONFIG}:{UPL}',
           overrides={**_branches('slow:dense,fast:factorized:0.25'), 'seed': 1}),
      dict(name='factorized25_seed1', config=f'{CONFIG}:factorized',
           overrides={**_branches('main:factorized:0.25'), 'seed': 1}),
      dict(name='amnet_mf3_2sided_upl', config=f'{CONFIG}:{UPL}',
           overrides=_branches('slow:dense,mid:factorized:0.25,fast:factorized:0.1')),
      dict(name='factorized38', config=f'{CONFIG}:factorized',
           overrides=_branches('main:factorized:0.38')),
      dict(name='pruned50_g32', config=f'{CONFIG}:pruned',
           overrides={'model.encoder.sparse_group': 32}),
  ]
  return dict(report='amnet', points=points, routing_row='amnet_mf25_2sided_upl',
              stream_utterances=8,
              ablation_rows=['amnet_mf25_2sided_upl', UPL])
