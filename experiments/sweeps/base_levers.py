"""Each lever of the base recipe alone, at equal steps: the 2026-12-01 recipe
(experiments/configs/base.py:full_joint) cut to 2,000 steps, then the same with one lever changed.

  python launch.py --sweep=experiments/sweeps/base_levers.py --workdir=workdirs/base_levers_alone
  python launch.py --mode=report --sweep=experiments/sweeps/base_levers.py \
      --workdir=workdirs/base_levers_alone

`base.py:levers` turned three levers on at once and ended behind the recipe without saying which
one cost the accuracy. Here each row differs from `recipe` in one lever, on the same 2,000-step
schedule, data order and evaluation (300 utterances of `base_test` and `base_test_seen`):
  cmn           causal mean normalisation: each frame minus its utterance's running mean so far
                (asr/frontend.py:causal_mean_norm, a prior of 100 frames at the global mean)
  vtlp          the mel axis warped by a random vocal-tract factor in [0.9, 1.1] per utterance
  frames60      60 ms encoder frames (6 x 10 ms stacked) with two CTC outputs per frame
  pruned_joint  the RNN-T joint on 5 label positions per frame (asr/rnnt/pruned.py)
The report (`curves.{md,csv,png}` in the workdir) puts them side by side at equal training
wall time and at their last step. Expected (RESULTS.md, "Each lever alone", every utterance of
`base_test`): recipe 72.9% WER, cmn 70.8%, vtlp 72.9%, frames60 76.7%, pruned_joint 73.8%.
"""
CONFIG = 'experiments/configs/base.py:full_joint'   # the recipe these rows measured
SCHEDULE = {'train.steps': 2000, 'train.warmup_steps': 200, 'train.eval_every': 500,
            'train.checkpoint_every': 250}
LEVERS = {
    'recipe': {},
    'cmn': {'frontend.causal_cmn': True},
    'vtlp': {'frontend.vtlp_warp': 0.1},
    'frames60': {'frontend.stack': 6, 'frontend.stride': 6, 'model.ctc_upsample': 2},
    'pruned_joint': {'model.prune_range': 5},
}


def get_sweep(root: str):
  del root
  points = [dict(name=name, config=CONFIG, overrides={**SCHEDULE, **lever})
            for name, lever in LEVERS.items()]
  return dict(report='curves', points=points, minutes=(5, 10, 15, 20))
