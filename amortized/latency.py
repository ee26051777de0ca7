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

Two implementations that agree (and agree with the plain loop over one utterance in the
tests): `simulate_np` (batched numpy in float64, a closed cumulative form, for reports) and
`simulate_jax` (differentiable `lax.scan` over `step`, which a model's own scan calls per
frame through `pending_backlog` and `step`). The max is exact; its gradient is a subgradient at
ties.
"""
import jax
import jax.numpy as jnp
import numpy as np


class LatencyInputError(ValueError):
  """Inputs to the simulator that make no sense (shapes, non-positive rate or hop)."""


def _check_scalars(rate, hop):
  if not rate > 0:
    raise LatencyInputError(f'latency: rate must be > 0 FLOP/s, got rate={rate!r}')
  if not hop > 0:
    raise LatencyInputError(f'latency: hop must be > 0 seconds, got hop={hop!r}')


def _check_shapes(costs_shape, paddings_shape):
  if len(costs_shape) != 2:
    raise LatencyInputError(f'latency: costs must be [B, T], got shape {tuple(costs_shape)}')
  if paddings_shape is not None and tuple(paddings_shape) != tuple(costs_shape):
    raise LatencyInputError(f'latency: paddings shape {tuple(paddings_shape)} != costs shape '
                            f'{tuple(costs_shape)}')


def arrival_times(num_frames: int, hop: float, xp=np):
  """a_t = (t + 1) * hop for t = 0..num_frames-1: float64 with numpy, float32 with jax.numpy."""
  dtype = np.float64 if xp is np else jnp.float32
  return (xp.arange(num_frames, dtype=dtype) + 1) * hop


def final_upl(final, paddings, hop: float, xp=np):
  """UPL = f_T - a_T per utterance, T its last valid frame; 0 for an utterance with none.

  final [B] is the finish time after the whole sequence (padded frames leave it unchanged),
  paddings [B, T] with 1.0 at padded frames (anywhere, not only a suffix).
  """
  num_frames = paddings.shape[1]
  last = xp.max(xp.where(paddings < 0.5, xp.arange(num_frames)[None, :], -1), axis=1,
                initial=-1)
  return xp.where(last >= 0, final - (last + 1) * hop, 0.0)


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
  final = finish[:, -1] if num_frames else np.zeros(finish.shape[0])
  upl = final_upl(final, 1.0 - valid, hop)
  return dict(finish=finish, backlog=backlog, pending=pending, upl=upl)


def pending_backlog(f_prev, arrival):
  """max(f_prev - a_t, 0): what the arbitrator sees before choosing frame t's branch.

  Inside a model's scan: pending = pending_backlog(f, a_t); choose the branch (its cost may be a
  soft expectation); then f, _, backlog = step(f, a_t, cost, rate, padding).
  """
  return jnp.maximum(f_prev, arrival) - arrival


def step(f_prev, arrival, cost, rate: float, padding=0.0):
  """One frame of the recursion, for use inside a model's scan.

  Args:
    f_prev: finish time of the previous frame (seconds; 0 before the first frame).
    arrival: a_t, the arrival time of this frame (seconds).
    cost: FLOPs spent on this frame (may be a soft expected cost).
    rate: FLOP/s.
    padding: 1.0 if this frame is padding (then f is unchanged and pending/backlog are 0).
  Returns:
    (f_t, pending_t, backlog_t); pending_t = max(f_prev - a_t, 0) is what the arbitrator sees
    before choosing frame t's branch, backlog_t = f_t - a_t.
  """
  start = jnp.maximum(f_prev, arrival)
  valid = padding < 0.5
  finish = jnp.where(valid, start + cost / rate, f_prev)
  pending = jnp.where(valid, start - arrival, 0.0)
  backlog = jnp.where(valid, finish - arrival, 0.0)
  return finish, pending, backlog


def simulate_jax(costs, paddings=None, *, rate: float, hop: float) -> dict:
  """Differentiable batched simulation (lax.scan over `step`); same outputs as `simulate_np`.

  Gradients flow from every output to `costs` (soft expected costs welcome); padded frames get
  zero gradient. Time is kept in the dtype of `costs` (float32 is plenty: seconds, not FLOPs).
  """
  _check_scalars(rate, hop)
  costs = jnp.asarray(costs)
  if not jnp.issubdtype(costs.dtype, jnp.floating):
    costs = costs.astype(jnp.float32)
  _check_shapes(costs.shape, None if paddings is None else jnp.shape(paddings))
  batch, num_frames = costs.shape
  paddings = (jnp.zeros_like(costs) if paddings is None
              else jnp.asarray(paddings, costs.dtype))
  arrival = arrival_times(num_frames, hop, jnp).astype(costs.dtype)

  def body(f_prev, xs):
    a_t, cost_t, pad_t = xs
    f_t, pending_t, backlog_t = step(f_prev, a_t, cost_t, rate, pad_t)
    return f_t, (f_t, pending_t, backlog_t)

  init = jnp.zeros((batch,), costs.dtype)
  final, (finish, pending, backlog) = jax.lax.scan(
      body, init, (arrival, costs.T, paddings.T))
  upl = final_upl(final, paddings, hop, jnp).astype(costs.dtype)
  return dict(finish=finish.T, backlog=backlog.T, pending=pending.T, upl=upl)
