"""The AmNet rows of `make demo` (experiments/configs/demo.py)."""
CONFIG = 'experiments/configs/demo.py'


def get_sweep(root: str):
  del root
  return dict(report='amnet', points=[
      dict(name='full', config=f'{CONFIG}:full'),
      dict(name='factorized', config=f'{CONFIG}:factorized',
           overrides={'model.encoder.init_from': '{root}/full'}),
      dict(name='amnet', config=f'{CONFIG}:amnet',
           overrides={'model.encoder.init_from': '{root}/full'}),
      dict(name='amnet_nolat', config=f'{CONFIG}:amnet_nolat',
           overrides={'model.encoder.init_from': '{root}/full'}),
  ])
