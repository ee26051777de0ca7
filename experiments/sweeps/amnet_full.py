"""The AmNet table at paper size on the `full` corpus (GPU): 5 x LSTM-640 encoders (about 31
MFLOPs per frame, the article's 30-43 M), on the article's 650 MFLOP/s simulated device.

  python launch.py --sweep=experiments/sweeps/amnet_full.py --workdir=workdirs/amnet_full
  python launch.py --mode=report --sweep=experiments/sweeps/amnet_full.py \
      --workdir=workdirs/amnet_full
"""
from experiments.configs import amnet

CONFIG = 'experiments/configs/amnet.py'
PAPER = {'data.corpus': 'full', 'model.encoder.layers': 5, 'model.encoder.units': 640,
         'model.encoder.device_flops': 650e6, 'model.pred_units': 320, 'model.joint_dim': 320,
         'train.batch_size': 32, 'model.encoder.arbitrator_hidden': 64}


def get_sweep(root: str):
  del root
  points = [dict(name='full', config=f'{CONFIG}:full', overrides=dict(PAPER, **{
      'train.steps': 20000}))]
  for row in amnet.ROWS:
    if row != 'full':
      points.append(dict(name=row, config=f'{CONFIG}:{row}', overrides=dict(PAPER, **{
          'model.encoder.init_from': '{root}/full', 'train.steps': 8000,
          'model.encoder.anneal_steps': 4000})))
  return dict(report='amnet', points=points)
