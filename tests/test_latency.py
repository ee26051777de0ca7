"""Tests for amortized/latency.py: a plain loop (tests/helpers.py), hand-derived cases, finite
differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amortized import latency
from tests import helpers

RATE = 650e6     # FLOP/s, the article's device
HOP = 0.03       # 30 ms stacked frames


def _random_batch(seed, batch=5, frames=40):
  rng = np.random.default_rng(seed)
  # Per-frame time between 0.2 and 2 hops: the device alternates between idle and behind.
  costs = rng.uniform(0.2, 2.0, size=(batch, frames)) * HOP * RATE
  lengths = rng.integers(1, frames + 1, size=batch)
  lengths[0] = frames
  paddings = (np.arange(frames)[None, :] >= lengths[:, None]).astype(np.float64)
  return costs, paddings, lengths


def test_np_and_jax_match_python_loop_with_trailing_padding():
  costs, paddings, lengths = _random_batch(0)
  out_np = latency.simulate_np(costs, paddings, rate=RATE, hop=HOP)
  out_jax = latency.simulate_jax(jnp.asarray(costs, jnp.float32), paddings, rate=RATE, hop=HOP)
  for b, n in enumerate(lengths):
    ref = helpers.simulate_loop(list(costs[b, :n]), RATE, HOP)
    for key in ('finish', 'backlog', 'pending'):
      np.testing.assert_allclose(out_np[key][b, :n], ref[key], rtol=1e-12, atol=1e-12)
      np.testing.assert_allclose(out_jax[key][b, :n], ref[key], rtol=1e-5, atol=1e-5)
    # Padded frames: finish frozen, backlog and pending reported as 0.
    np.testing.assert_allclose(out_np['finish'][b, n:], ref['finish'][-1])
    assert np.all(out_np['backlog'][b, n:] == 0) and np.all(out_np['pending'][b, n:] == 0)
    np.testing.assert_allclose(out_np['upl'][b], ref['upl'], rtol=1e-12)
    np.testing.assert_allclose(out_jax['upl'][b], ref['upl'], rtol=1e-5, atol=1e-6)


def test_interior_padding_and_empty_utterance_match_loop():
  rng = np.random.default_rng(1)
  costs = rng.uniform(0.2, 2.0, size=(3, 12)) * HOP * RATE
  paddings = (rng.uniform(size=(3, 12)) < 0.3).astype(np.float64)
  paddings[2] = 1.0    # no valid frame at all
  out_np = latency.simulate_np(costs, paddings, rate=RATE, hop=HOP)
  out_jax = latency.simulate_jax(costs, paddings, rate=RATE, hop=HOP)
  for b in range(3):
    ref = helpers.simulate_loop(list(costs[b]), RATE, HOP, paddings=list(paddings[b]))
    for key in ('finish', 'backlog', 'pending'):
      np.testing.assert_allclose(out_np[key][b], ref[key], rtol=1e-12, atol=1e-12)
      np.testing.assert_allclose(out_jax[key][b], ref[key], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_np['upl'][b], ref['upl'], atol=1e-12)
    np.testing.assert_allclose(out_jax['upl'][b], ref['upl'], atol=1e-5)
  assert out_np['upl'][2] == 0.0


def test_model_that_keeps_up_has_upl_of_its_last_frame():
  rng = np.random.default_rng(2)
  costs = rng.uniform(0.1, 0.99, size=(1, 30)) * HOP * RATE
  out = latency.simulate_np(costs, rate=RATE, hop=HOP)
  np.testing.assert_allclose(out['upl'][0], costs[0, -1] / RATE, rtol=1e-12)
  assert np.all(out['pending'] == 0)     # never behind when a frame arrives
  np.testing.assert_allclose(out['backlog'], costs / RATE, rtol=1e-12)


@pytest.mark.parametrize('num_frames', [1, 7, 50])
def test_model_at_one_and_a_half_real_time(num_frames):
  # Every frame takes 1.5 hops. Frame 0 starts at a_0 = hop and the device never idles again
  # (f_{t-1} = hop + 1.5 t hop >= (t + 1) hop = a_t), so f_t = hop + 1.5 (t + 1) hop and
  # UPL = f_{N-1} - a_{N-1} = hop + 1.5 N hop - N hop = 0.5 N hop + hop.
  costs = np.full((1, num_frames), 1.5 * HOP * RATE)
  expected_upl = 0.5 * num_frames * HOP + HOP
  out_np = latency.simulate_np(costs, rate=RATE, hop=HOP)
  np.testing.assert_allclose(out_np['upl'][0], expected_upl, rtol=1e-12)
  t = np.arange(num_frames)
  np.testing.assert_allclose(out_np['pending'][0], 0.5 * t * HOP, atol=1e-12)
  out_jax = latency.simulate_jax(costs, rate=RATE, hop=HOP)
  np.testing.assert_allclose(out_jax['upl'][0], expected_upl, rtol=1e-5)


def test_step_inside_a_scan_matches_simulate():
  costs, paddings, _ = _random_batch(3, batch=2, frames=10)
  costs = jnp.asarray(costs, jnp.float32)

  def body(f_prev, xs):
    t, cost_t, pad_t = xs
    f_t, pending_t, _ = latency.step(f_prev, (t + 1) * HOP, cost_t, RATE, pad_t)
    return f_t, pending_t

  _, pending = jax.lax.scan(body, jnp.zeros(2), (jnp.arange(10.0), costs.T, paddings.T))
  ref = latency.simulate_np(costs, paddings, rate=RATE, hop=HOP)
  np.testing.assert_allclose(pending.T, ref['pending'], atol=1e-5)


def _upl_np(costs_row, paddings_row):
  return latency.simulate_np(costs_row[None], paddings_row[None], rate=RATE, hop=HOP)['upl'][0]


def test_upl_gradient_matches_finite_differences_and_busy_period():
  costs, paddings, _ = _random_batch(4, batch=3, frames=25)
  grad = jax.grad(lambda c: latency.simulate_jax(c, paddings, rate=RATE, hop=HOP)['upl'].sum())(
      jnp.asarray(costs, jnp.float32))
  grad = np.asarray(grad, np.float64)
  eps = 1e-3 * HOP * RATE   # 1e-3 hop of work: far smaller than the random gaps to any kink
  for b in range(3):
    fd = np.zeros(costs.shape[1])
    for t in range(costs.shape[1]):
      plus, minus = costs[b].copy(), costs[b].copy()
      plus[t] += eps
      minus[t] -= eps
      fd[t] = (_upl_np(plus, paddings[b]) - _upl_np(minus, paddings[b])) / (2 * eps)
    np.testing.assert_allclose(grad[b], fd, rtol=1e-3, atol=1e-3 / RATE)
    # Independent reading: d UPL / d cost_t is 1/R on the final busy period, 0 elsewhere.
    assert set(np.round(fd * RATE, 6)) <= {0.0, 1.0}
    assert fd[paddings[b] > 0.5].tolist() == [0.0] * int(paddings[b].sum())


@pytest.mark.parametrize('kwargs', [dict(rate=0.0, hop=HOP), dict(rate=RATE, hop=-1.0)])
def test_bad_scalars_raise(kwargs):
  with pytest.raises(latency.LatencyInputError, match='must be > 0'):
    latency.simulate_np(np.ones((1, 3)), **kwargs)


def test_shape_mismatch_raises():
  with pytest.raises(latency.LatencyInputError, match='paddings shape'):
    latency.simulate_jax(np.ones((2, 3)), np.zeros((2, 4)), rate=RATE, hop=HOP)


def test_pending_backlog_matches_step():
  f_prev, arrival = jnp.array([0.0, 0.05, 0.2]), jnp.array([0.1, 0.1, 0.1])
  _, pending, _ = latency.step(f_prev, arrival, 1e6, RATE)
  np.testing.assert_allclose(latency.pending_backlog(f_prev, arrival), pending)
  np.testing.assert_allclose(pending, [0.0, 0.0, 0.1], atol=1e-7)
