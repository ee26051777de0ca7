"""The decisive rows of the shipped AmNet table (experiments/sweeps/amnet_shipped.py) fine-tuned
four times as long: 1,200 steps, about 3.6 epochs of `full`'s base domain, evaluated every 300
steps. At 300 steps the AmNet-MF's dense branch ends 2.3 points behind the dense model
fine-tuned alone, and the AmNet loses to one factorized encoder at matched FLOPs; this sweep
asks whether longer joint training closes that gap. The learning-rate decay and the routing
temperature's anneal (two thirds of the run, as in the 300-step rows) stretch with the run.

  python launch.py --sweep=experiments/sweeps/amnet_shipped_long.py \
      --workdir=workdirs/amnet_shipped_long
  python launch.py --mode=report --sweep=experiments/sweeps/amnet_shipped_long.py \
      --workdir=workdirs/amnet_shipped_long

Measured: RESULTS.md, "Longer joint training".
"""
CONFIG = 'experiments/configs/amnet_shipped.py'
UPL = 'amnet_mf_2sided_upl'
STEPS = 1200
LONG = {'train.steps': STEPS, 'train.eval_every': 300, 'train.checkpoint_every': 300}
AMNET = {**LONG, 'model.encoder.branches': 'slow:dense,fast:factorized:0.25',
         'model.encoder.routing.anneal_steps': STEPS * 2 // 3}


def get_sweep(root: str):
  del root
  points = [
      dict(name='full', config=f'{CONFIG}:full_continued', workdir='pretrained/base'),
      dict(name='full_continued', config=f'{CONFIG}:full_continued', overrides=LONG),
      dict(name='amnet_mf25_2sided_upl', config=f'{CONFIG}:{UPL}', overrides=AMNET),
      dict(name='factorized50', config=f'{CONFIG}:factorized', overrides=LONG),
      dict(name='amnet_mf25_2sided_upl_seed1', config=f'{CONFIG}:{UPL}',
           overrides={**AMNET, 'seed': 1}),
  ]
  return dict(report='amnet', points=points, routing_row='amnet_mf25_2sided_upl',
              stream_utterances=8, ablation_rows=['amnet_mf25_2sided_upl'])
