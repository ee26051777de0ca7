"""The AmNet rows of `make demo` (experiments/configs/demo.py): the shipped base is the `full`
row as it is (no training); the other rows start from it."""
CONFIG = 'experiments/configs/demo.py'


def get_sweep(root: str):
  del root
  # Streaming time on 8 utterances, not 16: the demo's 20-minute budget.
  return dict(report='amnet', routing_row='amnet', stream_utterances=8, points=[
      dict(name='full', config=f'{CONFIG}:full', workdir='pretrained/base'),
      dict(name='factorized', config=f'{CONFIG}:factorized'),
      dict(name='amnet', config=f'{CONFIG}:amnet'),
      dict(name='amnet_nolat', config=f'{CONFIG}:amnet_nolat'),
  ])
