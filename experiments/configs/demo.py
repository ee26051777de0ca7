"""`make demo`: both halves of the article from the shipped base recognizer, on a CPU.

The deployed model is `pretrained/base` (experiments/configs/base.py, trained on `full`; its
model card says how well it recognises held-out voices). The demo builds the `demo` corpus (a
part of `small`; its `base_test` is small's, sentences the base never trained on), evaluates
the base as the `full` row, and starts every other row from it: `factorized` (the static baseline at half the encoder FLOPs,
SVD-initialised), `amnet` (the slow dense branch plus a rank-0.1 factorized fast branch and
an arbitrator, latency-aware loss) and `amnet_nolat` (the same without the latency term),
each fine-tuned briefly on the base domain; then two consecutive sparse-diff updates at a 10%
budget on the base, each shipped as a signed package and applied. The fine-tuning is short
(150 steps of 60 s of audio, three bucket shapes, so three compilations per row) to fit the
20-minute budget; `experiments/sweeps/amnet_cpu.py` is the table with full-length training.

  make demo            # = python launch.py --mode=demo --workdir=workdirs/demo

Expected: both tables printed and `workdirs/demo/report.md` written in under 20 minutes on two
CPU cores (figures: RESULTS.md, "The demo").
"""
import ml_collections

from experiments.configs import amnet
from experiments.configs import base
from experiments.configs import diffs

PRETRAINED = 'pretrained/base'


def _on_demo(c):
  c.data.corpus = 'demo'
  c.data.extra_eval_splits = ''
  c.data.bucket_seconds = (2.5, 4.0, 8.0)
  c.data.batch_seconds = 60.0
  c.train.eval_every = 100000
  c.train.checkpoint_every = 100
  c.train.log_every = 20
  c.eval.max_utterances = 200
  return c


def get_config(row: str = 'full'):
  if row == 'diffs':
    c = _on_demo(base.get_config())
    d = diffs.get_config('small')
    c.diffs = ml_collections.ConfigDict(d.diffs.to_dict())
    c.diffs.base_workdir = PRETRAINED
    c.diffs.methods = 'sparse'
    c.diffs.budgets = '0.1'
    c.diffs.updates = 2
    c.diffs.steps_per_update = 100
    c.diffs.prune_rounds = 1
    c.diffs.eval_utterances = 200
    return c
  source = {'full': 'full', 'factorized': 'factorized', 'amnet': 'amnet_mf',
            'amnet_nolat': 'amnet_mf_nolat'}
  if row not in source:
    raise ValueError(f'demo.py: unknown row {row!r}; one of {sorted(source) + ["diffs"]}')
  c = _on_demo(base.get_config())
  spec = amnet.ROWS[source[row]]
  c.model.encoder.branches = spec['branches']
  if 'routing' in spec:
    c.model.encoder.routing.update(dict(amnet.ROUTED, **spec['routing']))
    c.model.encoder.routing.anneal_steps = 100
  if row != 'full':                 # fine-tuned from the shipped base
    c.model.encoder.init_from = PRETRAINED
    c.train.steps = 150
    c.train.lr = 1e-3
    c.train.warmup_steps = 10
  return c
