"""The AmNet rows of tools/gpu_oneshot.sh (experiments/configs/gpu.py) as one sweep: its report
writes the table and plots. The script trains each row in a process of its own, with its own
time limit; the sweep names them for the report, and `full` is the base's export.

  python launch.py --mode=report --sweep=experiments/sweeps/gpu.py --workdir=W/amnet
"""
CONFIG = 'experiments/configs/gpu.py'
FINE_TUNED = ('amnet_mf_2sided_upl', 'factorized', 'amnet_sparse')


def get_sweep(root: str, size: str = ''):
  del root
  suffix = f'@{size}' if size else ''
  points = [dict(name='full', config=f'{CONFIG}:base{suffix}')]
  points += [dict(name=row, config=f'{CONFIG}:{row}{suffix}',
                  overrides={'model.encoder.init_from': '{root}/full'}) for row in FINE_TUNED]
  # Streaming timing is off: on one CPU thread the paper-size rows would take minutes.
  return dict(report='amnet', points=points, routing_row='amnet_mf_2sided_upl',
              stream_utterances=0)
