"""The AmNet table with CPU-sized models (3 x LSTM-192) on `full`'s base domain: every row of
configs/amnet.py, in its order.

  python launch.py --sweep=experiments/sweeps/amnet_cpu.py --workdir=workdirs/amnet_cpu
  python launch.py --mode=report --sweep=experiments/sweeps/amnet_cpu.py \
      --workdir=workdirs/amnet_cpu
"""
from experiments.configs import amnet

CONFIG = 'experiments/configs/amnet.py'


def get_sweep(root: str):
  del root
  points = [dict(name='full', config=f'{CONFIG}:full')]
  for row in amnet.ROWS:
    if row != 'full':
      points.append(dict(name=row, config=f'{CONFIG}:{row}',
                         overrides={'model.encoder.init_from': '{root}/full'}))
  # The routing still shows the row that meets the UPL targets (RESULTS.md).
  return dict(report='amnet', points=points, routing_row='amnet_mf_2sided_upl')
