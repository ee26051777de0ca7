"""The AmNet table at paper size on the `full` corpus (GPU): 5 x LSTM-640 encoders (about 31
MFLOPs per frame, the article's 30-43 M), on the article's 650 MFLOP/s simulated device.

Every row of configs/amnet.py fine-tunes from `full` (`full_continued` is the dense model given
the same steps: the fair WER reference), then the rows the CPU table (RESULTS.md) found
decisive: the rank-0.25 and three-branch AmNets with the final-UPL term, and static factorized
encoders down to rank 0.1, the curve every CPU AmNet lay above. Not run yet: it needs at least
four GPU hours (8,000 steps per row: about 14 min for an AmNet at the 105 ms step measured on
one H100, 9 min for a single encoder at 66 ms; 20,000 for `full`).

  python launch.py --sweep=experiments/sweeps/amnet_full.py --workdir=workdirs/amnet_full
  python launch.py --mode=report --sweep=experiments/sweeps/amnet_full.py \
      --workdir=workdirs/amnet_full
"""
from experiments.configs import amnet

CONFIG = 'experiments/configs/amnet.py'
PAPER = {'data.corpus': 'full', 'model.encoder.layers': 5, 'model.encoder.units': 640,
         'model.encoder.device_flops': 650e6, 'model.pred_units': 320, 'model.joint_dim': 320,
         'train.batch_size': 32}
FINE_TUNE = {'model.encoder.init_from': '{root}/full', 'train.steps': 8000}
PAPER_ROUTING = {'model.encoder.routing.arbitrator_hidden': 64,
                 'model.encoder.routing.anneal_steps': 4000}
# Beyond the rows of configs/amnet.py: (name, row it starts from, overrides).
CPU_LESSONS = [
    ('amnet_mf25_2sided_upl', 'amnet_mf25_2sided',
     {'model.encoder.routing.loss_variant': 'two_sided_upl'}),
    ('amnet_mf3_2sided_upl', 'amnet_mf25_2sided', {
        'model.encoder.branches': 'slow:dense,mid:factorized:0.25,fast:factorized:0.1',
        'model.encoder.routing.loss_variant': 'two_sided_upl'}),
] + [(f'factorized{p}', 'factorized', {'model.encoder.branches': f'main:factorized:{p / 100}'})
     for p in (38, 25, 20, 10)]


def _fine_tuned(row: str, overrides: dict) -> dict:
  routed = 'routing' in amnet.ROWS[row]
  return {**PAPER, **FINE_TUNE, **(PAPER_ROUTING if routed else {}), **overrides}


def get_sweep(root: str):
  del root
  points = [dict(name='full', config=f'{CONFIG}:full', overrides=dict(PAPER, **{
      'train.steps': 20000}))]
  for row in amnet.ROWS:
    if row != 'full':
      points.append(dict(name=row, config=f'{CONFIG}:{row}', overrides=_fine_tuned(row, {})))
  for name, row, overrides in CPU_LESSONS:
    points.append(dict(name=name, config=f'{CONFIG}:{row}',
                       overrides=_fine_tuned(row, overrides)))
  return dict(report='amnet', points=points, routing_row='amnet_mf3_2sided_upl',
              ablation_rows=['amnet_mf_2sided_upl', 'amnet_mf25_2sided_upl',
                             'amnet_mf3_2sided_upl'])
