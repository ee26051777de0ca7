"""The AmNet table with CPU-sized models (3 x LSTM-192) on `full`'s base domain: every row of
configs/amnet.py fine-tuned from `full`, then the rows fine-tuned from `full_continued` (the
dense model trained longer), ending `_from_fc`. About 5.5 hours on 2 cores; the report, 16 min.
Measured table: RESULTS.md, "Amortized networks, CPU-sized models".

  python launch.py --sweep=experiments/sweeps/amnet_cpu.py --workdir=workdirs/amnet_cpu
  python launch.py --mode=report --sweep=experiments/sweeps/amnet_cpu.py \
      --workdir=workdirs/amnet_cpu
"""
from experiments.configs import amnet

CONFIG = 'experiments/configs/amnet.py'
FROM_FC = {'model.encoder.init_from': '{root}/full_continued'}
UPL = {'model.encoder.routing.loss_variant': 'two_sided_upl'}
THREE = {'model.encoder.branches': 'slow:dense,mid:factorized:0.25,fast:factorized:0.1'}
FROZEN_DECODER = {'train.frozen': 'predictor,joint,ctc_head'}


def get_sweep(root: str):
  del root
  points = [dict(name='full', config=f'{CONFIG}:full')]
  for row in amnet.ROWS:
    if row != 'full':
      points.append(dict(name=row, config=f'{CONFIG}:{row}',
                         overrides={'model.encoder.init_from': '{root}/full'}))
  # From the better-trained dense model, against the dense model trained as long.
  for row in ('full_continued', 'amnet_mf_2sided_upl', 'factorized', 'pruned'):
    name = 'full_continued2' if row == 'full_continued' else f'{row}_from_fc'
    points.append(dict(name=name, config=f'{CONFIG}:{row}', overrides=FROM_FC))
  # The rank-0.25 row's variants ("Seeds, three branches, the soft sample, frozen parts";
  # "Each branch alone"), and a static factorized encoder at the rank-0.1 AmNet's 38% of the
  # FLOPs (matched FLOPs).
  variants = [
      ('amnet_mf25_2sided_upl_from_fc', {}),
      ('amnet_mf20_2sided_upl_from_fc',
       {'model.encoder.branches': 'slow:dense,fast:factorized:0.2'}),
      ('factorized38_from_fc', {'model.encoder.branches': 'main:factorized:0.38'}),
      ('amnet_mf3_2sided_upl_from_fc', THREE),
      ('amnet_mf25_2sided_upl_from_fc_seed1', {'seed': 1}),
      ('amnet_mf25_2sided_upl_soft_from_fc', {'model.encoder.routing.gumbel_hard': False}),
      ('amnet_mf25_2sided_upl_frozen_dec_from_fc', FROZEN_DECODER),
      ('amnet_mf3_2sided_upl_frozen_dec_from_fc', {**THREE, **FROZEN_DECODER}),
      ('amnet_mf25_2sided_upl_frozen_slow_from_fc',
       {'train.frozen': 'encoder/branches/slow,predictor,joint,ctc_head'}),
  ]
  for name, overrides in variants:
    if name.startswith('factorized'):
      points.append(dict(name=name, config=f'{CONFIG}:factorized',
                         overrides={**FROM_FC, **overrides}))
    else:
      points.append(dict(name=name, config=f'{CONFIG}:amnet_mf25_2sided',
                         overrides={**FROM_FC, **UPL, **overrides}))
  # The static curve at the fast branches' ranks ("The static factorized curve below 38%").
  for percent in (25, 20, 10):
    points.append(dict(name=f'factorized{percent}_from_fc', config=f'{CONFIG}:factorized',
                       overrides={**FROM_FC,
                                  'model.encoder.branches': f'main:factorized:{percent / 100}'}))
  return dict(report='amnet', points=points, routing_row='amnet_mf_2sided_upl',
              ablation_rows=['amnet_mf_2sided_upl', 'amnet_mf_2sided_upl_from_fc',
                             *[name for name, _ in variants if name.startswith('amnet')]])
