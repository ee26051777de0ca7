"""Streaming latency simulator: a single-thread device working through encoder frames.

Model (docs/DESIGN.md, "The latency model"). The device runs at `rate` FLOP/s on one thread. Frame t
(0-based) arrives at `a_t = (t + 1) * hop` seconds; the device starts it once both the frame has
arrived and the previous frame is done, and spends `cost_t / rate` seconds on it:

    f_t = max(f_{t-1}, a_t) + cost_t / rate,        f_{-1} = 0.

- backlog `b_t = f_t - a_t`: seconds of audio not yet processed when frame t is done
  (always >= cost_t / rate);
- pending `p_t = max(f_{t-1} - a_t, 0)`: the backlog the arbitrator sees when it decides frame
  t's branch, i.e. before frame t is processed;
- user-perceived latency `UPL = f_T - a_T` for the last valid frame T: the delay between the end
  of speech and the end of encoding.

Padded frames (paddings == 1) cost nothing and leave f unchanged; their backlog and pending are
reported as 0. Padding need not be trailing: T is the last frame with paddings == 0. An utterance
with no valid frame has UPL 0.

Three implementations that agree: `simulate_python` (a plain loop over one utterance, the
reference), `simulate_np` (batched numpy, a closed cumulative form), and `simulate_jax`
(differentiable `lax.scan` over `step`, which a model's own scan can call per frame). With
`temperature` set, `simulate_jax`/`step` replace max(f_{t-1}, a_t) by the smooth
`temperature * logaddexp(f_{t-1}/temperature, a_t/temperature)`, which is >= the exact max by at
most `temperature * log 2` (at the kink) and gives non-zero gradients on both sides of it. The
default (`temperature=None`) is the exact max; its gradient is a subgradient at ties.
"""
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class LatencyInputError(ValueError):
  """Inputs to the simulator that make no sense (shapes, non-positive rate or hop)."""


def _check_scalars(rate, hop, temperature=None):
  if not rate > 0:
    raise LatencyInputError(f'latency: rate must be > 0 FLOP/s, got rate={rate!r}')
  if not hop > 0:
    raise LatencyInputError(f'latency: hop must be > 0 seconds, got hop={hop!r}')
  if temperature is not None and not temperature > 0:
    raise LatencyInputError(
        f'latency: temperature must be > 0 or None, got temperature={temperature!r}')


def _check_shapes(costs_shape, paddings_shape):
  if len(costs_shape) != 2:
    raise LatencyInputError(f'latency: costs must be [B, T], got shape {tuple(costs_shape)}')
  if paddings_shape is not None and tuple(paddings_shape) != tuple(costs_shape):
    raise LatencyInputError(f'latency: paddings shape {tuple(paddings_shape)} != costs shape '
                            f'{tuple(costs_shape)}')


def arrival_times(num_frames: int, hop: float) -> np.ndarray:
  """a_t = (t + 1) * hop for t = 0..num_frames-1 (float64)."""
  return (np.arange(num_frames, dtype=np.float64) + 1.0) * hop


def simulate_python(costs: Sequence[float], rate: float, hop: float,
                    paddings: Optional[Sequence[float]] = None) -> dict:
  """Reference: a plain loop over one utterance. Returns lists and a float UPL."""
  _check_scalars(rate, hop)
  paddings = [0.0] * len(costs) if paddings is None else list(paddings)
  finish, backlog, pending = [], [], []
  f_prev, upl = 0.0, 0.0
  for t, (cost, padding) in enumerate(zip(costs, paddings)):
    arrival = (t + 1) * hop
    if padding >= 0.5:
      finish.append(f_prev)
      backlog.append(0.0)
      pending.append(0.0)
      continue
    pending.append(max(f_prev - arrival, 0.0))
    f_prev = max(f_prev, arrival) + float(cost) / rate
    finish.append(f_prev)
    backlog.append(f_prev - arrival)
    upl = backlog[-1]
  return dict(finish=finish, backlog=backlog, pending=pending, upl=upl)


def simulate_np(costs, paddings=None, *, rate: float, hop: float) -> dict:
  """Batched exact simulation in float64 numpy.

  Unrolling the recursion, a frame's finish time is set by the last frame s <= t at which the
  device was idle and started on arrival: f_t = C_t + max(0, max_{valid s<=t} (a_s - C_{s-1}))
  with C_t the cumulative valid cost in seconds. That is a cumulative max, so there is no loop.

  Args:
    costs: [B, T] FLOPs per frame.
    paddings: [B, T], 1.0 at padded frames (None: all valid).
    rate: FLOP/s of the device.
    hop: seconds between frame arrivals.
  Returns:
    dict(finish [B, T], backlog [B, T], pending [B, T], upl [B]) in seconds, float64.
  """
  _check_scalars(rate, hop)
  costs = np.asarray(costs, np.float64)
  _check_shapes(costs.shape, None if paddings is None else np.shape(paddings))
  num_frames = costs.shape[1]
  valid = (np.ones_like(costs) if paddings is None
           else 1.0 - np.asarray(paddings, np.float64)) > 0.5
  seconds = np.where(valid, costs / rate, 0.0)
  arrival = arrival_times(num_frames, hop)[None, :]
  cum = np.cumsum(seconds, axis=1)                     # C_t
  cum_before = cum - seconds                           # C_{t-1}
  # Candidate start offsets a_s - C_{s-1}; padded frames never restart the device. The initial
  # state f_{-1} = 0 contributes the candidate 0.
  candidates = np.where(valid, arrival - cum_before, 0.0)
  best = np.maximum(np.maximum.accumulate(candidates, axis=1), 0.0)
  finish = cum + best
  prev_finish = np.concatenate([np.zeros_like(finish[:, :1]), finish[:, :-1]], axis=1)
  backlog = np.where(valid, finish - arrival, 0.0)
  pending = np.where(valid, np.maximum(prev_finish - arrival, 0.0), 0.0)
  upl = _upl_np(finish, valid, hop)
  return dict(finish=finish, backlog=backlog, pending=pending, upl=upl)


def _upl_np(finish, valid, hop):
  num_frames = finish.shape[1]
  if num_frames == 0:
    return np.zeros(finish.shape[0])
  last = np.where(valid, np.arange(num_frames)[None, :], -1).max(axis=1)   # -1: none valid
  return np.where(last >= 0, finish[:, -1] - (last + 1) * hop, 0.0)


def _smooth_max(x, y, temperature):
  if temperature is None:
    return jnp.maximum(x, y)
  return temperature * jnp.logaddexp(x / temperature, y / temperature)


def pending_backlog(f_prev, arrival, temperature: Optional[float] = None):
  """max(f_prev - a_t, 0): what the arbitrator sees before choosing frame t's branch.

  Inside a model's scan: pending = pending_backlog(f, a_t); choose the branch (its cost may be a
  soft expectation); then f, _, backlog = step(f, a_t, cost, rate, padding). The smooth version
  equals step's pending output for the same temperature.
  """
  return _smooth_max(f_prev, arrival, temperature) - arrival


def step(f_prev, arrival, cost, rate: float, padding=0.0,
         temperature: Optional[float] = None):
  """One frame of the recursion, for use inside a model's scan.

  Args:
    f_prev: finish time of the previous frame (seconds; 0 before the first frame).
    arrival: a_t, the arrival time of this frame (seconds).
    cost: FLOPs spent on this frame (may be a soft expected cost).
    rate: FLOP/s.
    padding: 1.0 if this frame is padding (then f is unchanged and pending/backlog are 0).
    temperature: None for the exact max, else the smoothing temperature in seconds.
  Returns:
    (f_t, pending_t, backlog_t); pending_t = max(f_prev - a_t, 0) is what the arbitrator sees
    before choosing frame t's branch, backlog_t = f_t - a_t.
  """
  start = _smooth_max(f_prev, arrival, temperature)
  valid = padding < 0.5
  finish = jnp.where(valid, start + cost / rate, f_prev)
  pending = jnp.where(valid, start - arrival, 0.0)
  backlog = jnp.where(valid, finish - arrival, 0.0)
  return finish, pending, backlog


def simulate_jax(costs, paddings=None, *, rate: float, hop: float,
                 temperature: Optional[float] = None) -> dict:
  """Differentiable batched simulation (lax.scan over `step`); same outputs as `simulate_np`.

  Gradients flow from every output to `costs` (soft expected costs welcome); padded frames get
  zero gradient. Time is kept in the dtype of `costs` (float32 is plenty: seconds, not FLOPs).
  """
  _check_scalars(rate, hop, temperature)
  costs = jnp.asarray(costs)
  if not jnp.issubdtype(costs.dtype, jnp.floating):
    costs = costs.astype(jnp.float32)
  _check_shapes(costs.shape, None if paddings is None else jnp.shape(paddings))
  batch, num_frames = costs.shape
  paddings = (jnp.zeros_like(costs) if paddings is None
              else jnp.asarray(paddings, costs.dtype))
  arrival = ((jnp.arange(num_frames) + 1) * hop).astype(costs.dtype)

  def body(f_prev, xs):
    a_t, cost_t, pad_t = xs
    f_t, pending_t, backlog_t = step(f_prev, a_t, cost_t, rate, pad_t, temperature)
    return f_t, (f_t, pending_t, backlog_t)

  init = jnp.zeros((batch,), costs.dtype)
  final, (finish, pending, backlog) = jax.lax.scan(
      body, init, (arrival, costs.T, paddings.T))
  valid = paddings < 0.5
  last = jnp.max(jnp.where(valid, jnp.arange(num_frames)[None, :], -1), axis=1)
  upl = jnp.where(last >= 0, final - (last + 1).astype(costs.dtype) * hop, 0.0)
  return dict(finish=finish.T, backlog=backlog.T, pending=pending.T, upl=upl)
