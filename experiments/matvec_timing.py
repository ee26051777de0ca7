"""Per-frame pruned matrix-vector products on one CPU thread: dense, masked dense and grouped.

Streaming multiplies one frame (or a few) by each weight matrix, in a sequential loop. This
times that product inside `jax.jit` under a `lax.scan` of `--frames` steps whose input is
computed from the previous step's output (as for a recurrent matrix), for x [B, in] and
W [in, out], in these forms:
  dense         x @ W
  masked        x @ (W * mask), the training form of a pruned matrix (element-wise mask)
  ell           the grouped format with G = 1 (per-column indices) of the element-wise mask
  grouped_G     the grouped format of a mask pruned in groups of G output columns
                (`asr.sparsity.group_mask`, `asr.lstm.to_grouped`)
All forms of one shape are timed in the same process in interleaved passes; each figure is the
median pass, and each ratio is to the dense product of the same shape.

  python -m experiments.matvec_timing [--batch=1,4] [--inputs=192,480] [--out=768] \\
      [--densities=0.1,0.2,0.3] [--groups=16,32,64] [--frames=100] [--repeats=15]

It re-runs itself with XLA's CPU thread pool off (as `experiments.stream_timing` does).
"""
import argparse
import math
import os
import sys
import time

from experiments import stream_timing


def _forms(rng, m, n, density, groups):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from asr import lstm  # pylint: disable=g-import-not-at-top
  from asr import sparsity  # pylint: disable=g-import-not-at-top
  w = (rng.standard_normal((m, n)) / math.sqrt(m)).astype(np.float32)
  masked = w * sparsity.magnitude_mask(w, density)
  forms = {'dense': ({'kernel': jnp.asarray(w)}, 1.0),
           'masked': ({'kernel': jnp.asarray(masked)}, 1.0),
           'ell': (lstm.to_grouped(masked, 1), None)}
  for g in groups:
    if n % g == 0:
      forms[f'grouped_{g}'] = (lstm.to_grouped(w * sparsity.group_mask(w, density, g), g), None)
  for name, (weights, _) in forms.items():
    if 'rows' in weights:     # the share of the dense multiply-adds the form computes
      forms[name] = (weights, weights['values'].size / (m * n))
  return forms


def _loop():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from asr import lstm  # pylint: disable=g-import-not-at-top

  def run(weights, xs):
    m = xs.shape[-1]

    def step(h, x_t):
      y = lstm.matmul(weights, h)
      return jnp.tanh(y[:, :m] + x_t), ()    # the next input depends on this output
    h, _ = jax.lax.scan(step, xs[0], xs)
    return h
  return jax.jit(run)


def measure(batch, m, n, density, groups, frames, repeats, rng) -> list[dict]:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  forms = _forms(rng, m, n, density, groups)
  xs = jnp.asarray(rng.standard_normal((frames, batch, m)) * 0.1, jnp.float32)
  loops = {}
  for name, (weights, _) in forms.items():
    loop = _loop()
    jax.block_until_ready(loop(weights, xs))                 # compiles
    loops[name] = loop
  times = {name: [] for name in forms}
  for _ in range(repeats):
    for name, loop in loops.items():
      t0 = time.perf_counter()
      jax.block_until_ready(loop(forms[name][0], xs))
      times[name].append(time.perf_counter() - t0)
  dense = float(np.median(times['dense']))
  return [{'batch': batch, 'in': m, 'out': n, 'density': density, 'form': name,
           'computed': forms[name][1], 'us_per_frame': 1e6 * float(np.median(t)) / frames,
           'vs_dense': float(np.median(t)) / dense} for name, t in times.items()]


def main(argv):
  parser = argparse.ArgumentParser()
  ints = lambda s: [int(v) for v in s.split(',')]
  parser.add_argument('--batch', type=ints, default=[1, 4])
  parser.add_argument('--inputs', type=ints, default=[192, 480])
  parser.add_argument('--out', type=int, default=768)
  parser.add_argument('--densities', type=lambda s: [float(v) for v in s.split(',')],
                      default=[0.1, 0.2, 0.3])
  parser.add_argument('--groups', type=ints, default=[16, 32, 64])
  parser.add_argument('--frames', type=int, default=100)
  parser.add_argument('--repeats', type=int, default=15)
  args = parser.parse_args(argv)
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  print('| B | in x out | density | form | computed | us/frame | / dense |\n'
        '|---|---|---|---|---|---|---|')
  for batch in args.batch:
    for m in args.inputs:
      for density in args.densities:
        for r in measure(batch, m, args.out, density, args.groups, args.frames, args.repeats,
                         rng):
          print(f"| {r['batch']} | {r['in']} x {r['out']} | {r['density']:g} | {r['form']} | "
                f"{r['computed']:.3f} | {r['us_per_frame']:.2f} | {r['vs_dense']:.2f} |",
                flush=True)


if __name__ == '__main__':
  if stream_timing.SINGLE_THREAD_FLAGS not in os.environ.get('XLA_FLAGS', ''):
    env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=(
        os.environ.get('XLA_FLAGS', '') + ' ' + stream_timing.SINGLE_THREAD_FLAGS).strip())
    os.execve(sys.executable, [sys.executable, '-m', 'experiments.matvec_timing',
                               *sys.argv[1:]], env)
  main(sys.argv[1:])
