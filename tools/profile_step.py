"""Where the base recognizer's train step spends its time: the whole RNN-T + CTC gradient, the
encoder with the CTC loss alone, the encoder alone, featurisation, and the RNN-T loss on given
logits, each timed alone (median of 5 after compilation) on a synthetic batch.

  python tools/profile_step.py BATCH SECONDS LABELS [key=value ...]   # e.g. 30 4 60
  python tools/profile_step.py 30 4 60 model.prune_range=0      # a change to the base config
  python tools/profile_step.py 30 4 60 levers     # the base recipe's levers added one at a time

`levers` times, in one process, the shipped recipe (30 ms frames, the joint at every lattice
cell) and then each lever of configs/base.py:levers added in turn, so the ratios are side by
side.

RESULTS.md, "The base recognizer", quotes its figures.
"""
import ast
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import optax  # pylint: disable=g-import-not-at-top,wrong-import-position
from asr import features  # pylint: disable=g-import-not-at-top,wrong-import-position
from asr import rnnt  # pylint: disable=g-import-not-at-top,wrong-import-position
from asr import train as train_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments.configs import base as base_cfg  # pylint: disable=wrong-import-position



def _parse(arg: str):
  key, _, value = arg.partition('=')
  try:
    return key, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key, value


def timeit(fn, *args, reps: int = 5) -> float:
  compiled = jax.jit(fn).lower(*args).compile()
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return sorted(times)[reps // 2]


PRUNED = {'model.prune_range': 5}
SIXTY = {**PRUNED, 'frontend.stack': 6, 'frontend.stride': 6, 'model.ctc_upsample': 2}
LEVERS = [
    ('30 ms frames, full joint (configs/base.py)', {}),
    ('+ pruned joint (5 positions per frame)', PRUNED),
    ('+ 60 ms frames, 2 CTC outputs per frame', SIXTY),
    ('+ VTLP (configs/base.py:levers)', {**SIXTY, 'frontend.vtlp_warp': 0.1}),
]


def main(batch: int, seconds: float, labels_per_row: int, overrides: dict, name: str = ''):
  cfg = base_cfg.get_config()
  sweep.apply_overrides(cfg, overrides, 'the command line')
  model = models.build_model(cfg)
  rng = np.random.default_rng(0)
  samples = int(seconds * 16000)
  audio = jnp.asarray((rng.standard_normal((batch, samples)) * 3000).astype(np.int16))
  audio_pads = jnp.zeros((batch, samples))
  labels = jnp.asarray(rng.integers(1, 29, (batch, labels_per_row)), jnp.int32)
  label_pads = jnp.zeros((batch, labels_per_row))
  stats = {'mean': jnp.zeros(cfg.frontend.num_mels), 'std': jnp.ones(cfg.frontend.num_mels)}
  feats, pads = features.featurize(audio, audio_pads, cfg.frontend, stats)
  params = model.init({'params': jax.random.key(0), 'gumbel': jax.random.key(0)}, feats, pads,
                      labels, label_pads)['params']
  encode = lambda p, x, xp: model.apply({'params': p}, x, xp,
                                        method=lambda m, x, xp: m.encoder(x, xp))

  def full_loss(p, x, xp):
    out = model.apply({'params': p}, x, xp, labels, label_pads)
    losses = train_lib.sequence_losses(out, labels, label_pads, cfg.model)
    return sum(w * l.sum() for w, l in losses.values())

  def ctc_loss(p, x, xp):
    enc, enc_pads, _ = encode(p, x, xp)
    logits = model.apply({'params': p}, enc, method=lambda m, e: m.ctc(e))
    up = cfg.model.ctc_upsample
    logits = logits.reshape(enc.shape[0], enc.shape[1] * up, -1)
    return optax.ctc_loss(logits, jnp.repeat(enc_pads, up, axis=1), labels, label_pads).sum()

  def encoder_only(p, x, xp):
    return jnp.sum(encode(p, x, xp)[0] ** 2)

  t_feat = timeit(lambda a, ap: features.featurize(a, ap, cfg.frontend, stats,
                                                   rng=jax.random.key(1)), audio, audio_pads)
  t_full = timeit(jax.grad(full_loss), params, feats, pads)
  t_ctc = timeit(jax.grad(ctc_loss), params, feats, pads)
  t_enc = timeit(jax.grad(encoder_only), params, feats, pads)
  logits = jax.random.normal(jax.random.key(0), (batch, feats.shape[1], labels_per_row + 1, 29))
  t_loss = timeit(jax.grad(lambda lg: rnnt.rnnt_loss(lg, pads, labels, label_pads).sum()),
                  logits)
  audio_s = batch * seconds
  print(f'{name + ": " if name else ""}B={batch} secs={seconds} U={labels_per_row} '
        f'({batch * feats.shape[1]} encoder frames): featurize {t_feat * 1e3:.0f} ms | RNN-T + CTC gradient {t_full * 1e3:.0f} ms '
        f'({audio_s / t_full:.0f} audio-s/s) | encoder + CTC {t_ctc * 1e3:.0f} ms '
        f'({audio_s / t_ctc:.0f}) | encoder alone {t_enc * 1e3:.0f} ms | rnnt_loss on logits '
        f'{t_loss * 1e3:.0f} ms')


if __name__ == '__main__':
  shape = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
  if sys.argv[4:] == ['levers']:
    for lever, settings in LEVERS:
      main(*shape, settings, lever)
  else:
    main(*shape, dict(_parse(a) for a in sys.argv[4:]))
