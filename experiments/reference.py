"""JAX twins of `experiments/torch_reference.py`'s models, timed side by side with them.

`bench.reference` names the comparison (`launch.py --mode=bench`):
  lstm_ctc   this codebase's LSTM stack (`asr.lstm.LSTMStack` run by `asr.lstm.run_stack`: the
             fused scans, or one cuDNN call on a GPU) + linear + CTC, an Adam step, against
             `nn.LSTM` + CTC;
  rnnt       the config's RNN-T (`experiments.models.build_model`) on feature frames, an Adam
             step, against the same architecture in PyTorch with torchaudio's rnnt_loss;
  rnnt_loss  `asr.rnnt.rnnt_loss` forward + backward against torchaudio's, same logits shape.
Both sides see random inputs of the same shapes, no data pipeline, clip 5 + Adam. The PyTorch
side runs in a subprocess of this run; where torch (or torchaudio) is missing the comparison is
reported as skipped with the reason, never silently dropped.
"""
import json
import statistics
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from asr import lstm
from asr import rnnt
from asr import train as train_lib
from experiments import models

KINDS = ('', 'lstm_ctc', 'rnnt', 'rnnt_loss')


class LSTMCTC(nn.Module):
  layers: int
  units: int
  vocab: int
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x, paddings):
    weights = lstm.LSTMStack(x.shape[-1], self.layers, self.units, name='encoder')()
    y = lstm.run_stack(weights, x, paddings, self.impl)
    return nn.Dense(self.vocab, name='head')(y)


def shapes(cfg) -> dict:
  r = cfg.bench.reference_shape
  model_cfg = cfg.model
  if cfg.bench.reference == 'lstm_ctc':
    return dict(layers=r.layers, units=r.units, input_dim=r.input_dim, batch=r.batch,
                frames=r.frames, labels=r.labels, vocab=r.vocab)
  return dict(layers=model_cfg.encoder.layers, units=model_cfg.encoder.units,
              input_dim=r.input_dim,
              batch=r.batch, frames=r.frames, labels=r.labels, vocab=r.vocab,
              pred_embed_dim=model_cfg.pred_embed_dim, pred_units=model_cfg.pred_units,
              joint_dim=model_cfg.joint_dim)


def _timed(fn, args, steps: int, warmup: int, threads_state: bool = True):
  """(compile_s, median step_s) of a jitted fn(state, *rest) -> state (or of fn(*args))."""
  t0 = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  state, rest = args[0], args[1:]
  times = []
  for i in range(warmup + steps):
    t0 = time.perf_counter()
    out = compiled(state, *rest)
    jax.block_until_ready(out)
    if i >= warmup:
      times.append(time.perf_counter() - t0)
    if threads_state:
      state = out
  return compile_s, statistics.median(times)


def _adam_step(loss_fn):
  optimizer = optax.chain(optax.clip_by_global_norm(5.0), optax.adam(1e-3))

  def step(state, *inputs):
    params, opt_state = state
    grads = jax.grad(loss_fn)(params, *inputs)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
  return optimizer, jax.jit(step, donate_argnums=0)


def jax_figures(cfg) -> dict:
  s = shapes(cfg)
  kind = cfg.bench.reference
  b, t, u, v = s['batch'], s['frames'], s['labels'], s['vocab']
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((b, t, s['input_dim'])), jnp.float32)
  pads = jnp.zeros((b, t))
  labels = jnp.asarray(rng.integers(1, v, (b, u)), jnp.int32)
  label_pads = jnp.zeros((b, u))
  if kind == 'rnnt_loss':
    logits = jnp.asarray(rng.standard_normal((b, t, u + 1, v)), jnp.float32)
    grad = jax.jit(jax.grad(lambda lg: rnnt.rnnt_loss(lg, pads, labels, label_pads).sum()))
    compile_s, step_s = _timed(grad, (logits,), cfg.bench.steps, cfg.bench.warmup,
                               threads_state=False)
    return {'compile_s': compile_s, 'step_s': step_s, 'shape': [b, t, u, v]}
  if kind == 'lstm_ctc':
    model = LSTMCTC(s['layers'], s['units'], v, cfg.model.encoder.lstm_impl)
    params = model.init(jax.random.key(0), x, pads)['params']

    def loss_fn(p, x, pads, labels, label_pads):
      return optax.ctc_loss(model.apply({'params': p}, x, pads), pads, labels, label_pads).sum()
  else:
    model = models.build_model(cfg)
    params = model.init(jax.random.key(0), x, pads, labels, label_pads)['params']

    def loss_fn(p, x, pads, labels, label_pads):
      out = model.apply({'params': p}, x, pads, labels, label_pads)
      losses = train_lib.sequence_losses(out, labels, label_pads, cfg.model)
      return sum(w * l.sum() for w, l in losses.values())
  optimizer, step = _adam_step(loss_fn)
  state = (params, optimizer.init(params))
  compile_s, step_s = _timed(step, (state, x, pads, labels, label_pads), cfg.bench.steps,
                             cfg.bench.warmup)
  return {'compile_s': compile_s, 'step_s': step_s,
          'params': sum(p.size for p in jax.tree_util.tree_leaves(params))}


def torch_figures(cfg) -> dict:
  """Runs experiments/torch_reference.py; {'skipped': reason} where it cannot run."""
  flags = [f'--model={cfg.bench.reference}', f'--steps={cfg.bench.steps}',
           f'--warmup={cfg.bench.warmup}']
  flags += [f'--{k}={v}' for k, v in shapes(cfg).items()]
  cmd = [sys.executable, '-m', 'experiments.torch_reference'] + flags
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    err = (proc.stderr.strip().splitlines() or ['no output'])[-1]
    if 'No module named' in err:
      err += ' (make bench-reference installs requirements-bench.txt)'
    return {'skipped': err}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def figures(cfg) -> list[dict]:
  """Both sides of the comparison and their ratio, as bench records."""
  kind = cfg.bench.reference
  theirs = torch_figures(cfg)      # first, so JAX's threads are not yet busy in this process
  ours = jax_figures(cfg)
  ours.update(figure='reference', side='jax', model=kind, backend=jax.default_backend())
  rows = [ours]
  if 'skipped' in theirs:
    rows.append({'figure': 'reference', 'side': 'torch', 'model': kind,
                 'skipped': theirs['skipped']})
    return rows
  theirs.update(figure='reference', side='torch')
  rows.append(theirs)
  rows.append({'figure': 'ratio', 'what': f'{kind} step: JAX / PyTorch ({theirs["device"]})',
               'value': ours['step_s'] / theirs['step_s']})
  return rows
