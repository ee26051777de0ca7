"""Tests for amortized/amortized_loss.py against per-frame numpy loops and hand cases."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amortized import amortized_loss
from amortized import latency

RATE, HOP, THRESHOLD = 650e6, 0.03, 0.06


def _batch(seed, batch=3, frames=9, branches=2):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(batch, frames, branches))
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  backlog = rng.uniform(0.0, 2 * THRESHOLD, size=(batch, frames))
  backlog[:, 0] = 0.0
  lengths = [frames, frames - 3, 2][:batch]
  paddings = (np.arange(frames)[None, :] >= np.array(lengths)[:, None]).astype(np.float32)
  return probs, backlog, paddings


def _reference(probs, costs, backlog, paddings, variant, lam_cost, lam_amr, smooth=False):
  """Frame by frame, from the docs/DESIGN.md formulas (2 branches: index 0 fast, 1 slow)."""
  costs = np.asarray(costs, np.float64)
  c_max, c_min = costs.max(), costs.min()
  cost_sum, lat_sum, count = 0.0, 0.0, 0
  for b in range(probs.shape[0]):
    for t in range(probs.shape[1]):
      if paddings[b, t] > 0.5:
        continue
      count += 1
      cost_sum += sum(probs[b, t, k] * costs[k] for k in range(len(costs))) / c_max
      x = min(max(backlog[b, t] / THRESHOLD, 0.0), 1.0)
      g = 1 - (3 * x**2 - 2 * x**3) if smooth else 1 - x
      if variant in ('backlog', 'two_sided'):
        lat_sum += sum(probs[b, t, k] * (c_max - costs[k]) / c_max * g
                       for k in range(len(costs)))
      if variant in ('slow_under_backlog', 'two_sided'):
        lat_sum += sum(probs[b, t, k] * (costs[k] - c_min) / (c_max - c_min) * (1 - g)
                       for k in range(len(costs)))
  return lam_cost * cost_sum / count + lam_amr * lat_sum / count


@pytest.mark.parametrize('variant', ['none', 'backlog', 'slow_under_backlog', 'two_sided'])
@pytest.mark.parametrize('smooth', [False, True])
@pytest.mark.parametrize('branches', [2, 3])
def test_matches_frame_loop(variant, smooth, branches):
  probs, backlog, paddings = _batch(0, branches=branches)
  costs = [10e6, 30e6] if branches == 2 else [10e6, 18e6, 30e6]
  loss, metrics = amortized_loss.amortized_terms(
      probs, costs, backlog, paddings, variant=variant, lambda_cost=0.7, lambda_amr=2.0,
      threshold=THRESHOLD, g_shape='smooth' if smooth else 'linear')
  expected = _reference(probs, costs, backlog, paddings, variant, 0.7, 2.0, smooth)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(metrics['amortized_loss'], expected, rtol=1e-5)


def test_two_branch_hand_case():
  # One utterance, two frames, fast cost 1/4 of slow. Frame 0: p_fast 0.8 at zero backlog
  # (g = 1); frame 1: p_fast 0.5 at half the threshold (g = 0.5).
  probs = np.array([[[0.8, 0.2], [0.5, 0.5]]])
  backlog = np.array([[0.0, THRESHOLD / 2]])
  paddings = np.zeros((1, 2))
  costs = [1.0, 4.0]
  _, m = amortized_loss.amortized_terms(probs, costs, backlog, paddings, variant='backlog',
                                        threshold=THRESHOLD)
  # cost: mean(0.8*0.25 + 0.2, 0.5*0.25 + 0.5) = mean(0.4, 0.625)
  np.testing.assert_allclose(m['cost_term'], 0.5125, rtol=1e-6)
  # backlog: saving 0.75 * mean(0.8*1, 0.5*0.5) = 0.75 * 0.525
  np.testing.assert_allclose(m['latency_term'], 0.75 * 0.525, rtol=1e-6)
  _, m = amortized_loss.amortized_terms(probs, costs, backlog, paddings,
                                        variant='slow_under_backlog', threshold=THRESHOLD)
  np.testing.assert_allclose(m['latency_term'], np.mean([0.2 * 0.0, 0.5 * 0.5]), rtol=1e-6)
  _, m = amortized_loss.amortized_terms(probs, costs, backlog, paddings, variant='two_sided',
                                        threshold=THRESHOLD)
  # frame 0: 0.75 * p_fast * 1 + p_slow * 0; frame 1: 0.75 * 0.5 * 0.5 + 0.5 * 0.5
  np.testing.assert_allclose(m['latency_term'], np.mean([0.6, 0.4375]), rtol=1e-6)


def test_final_upl_matches_simulator_on_expected_costs():
  probs, _, paddings = _batch(1)
  costs = np.array([0.5 * HOP * RATE, 1.5 * HOP * RATE])
  loss, m = amortized_loss.amortized_terms(
      probs, costs, None, paddings, variant='final_upl', lambda_amr=3.0, rate=RATE, hop=HOP)
  expected_costs = probs @ costs
  upl = latency.simulate_np(expected_costs, paddings, rate=RATE, hop=HOP)['upl']
  np.testing.assert_allclose(m['expected_upl'], upl.mean(), rtol=1e-5)
  np.testing.assert_allclose(loss, 3.0 * upl.mean() / HOP, rtol=1e-5)


@pytest.mark.parametrize('variant', ['backlog', 'slow_under_backlog', 'two_sided', 'final_upl',
                                     'two_sided_upl'])
def test_padded_frames_do_not_matter(variant):
  probs, backlog, paddings = _batch(2)
  kwargs = dict(variant=variant, lambda_cost=1.0, lambda_amr=1.0, threshold=THRESHOLD,
                rate=RATE, hop=HOP)
  base, _ = amortized_loss.amortized_terms(probs, [1e7, 3e7], backlog, paddings, **kwargs)
  rng = np.random.default_rng(9)
  garbage_probs = np.where(paddings[..., None] > 0, rng.uniform(size=probs.shape), probs)
  garbage_backlog = np.where(paddings > 0, 123.0, backlog)
  changed, _ = amortized_loss.amortized_terms(garbage_probs, [1e7, 3e7], garbage_backlog,
                                              paddings, **kwargs)
  np.testing.assert_allclose(changed, base, rtol=1e-6)


def test_two_sided_upl_is_the_sum_of_its_parts():
  probs, backlog, paddings = _batch(3)
  kwargs = dict(lambda_cost=0.5, lambda_amr=2.0, threshold=THRESHOLD, rate=RATE, hop=HOP)
  costs = [1e7, 3e7]
  both, m = amortized_loss.amortized_terms(probs, costs, backlog, paddings,
                                           variant='two_sided_upl', **kwargs)
  sided, m_sided = amortized_loss.amortized_terms(probs, costs, backlog, paddings,
                                                  variant='two_sided', **kwargs)
  upl, m_upl = amortized_loss.amortized_terms(probs, costs, None, paddings,
                                              variant='final_upl', **kwargs)
  cost = kwargs['lambda_cost'] * m['cost_term']
  np.testing.assert_allclose(both, sided + upl - cost, rtol=1e-6)     # the cost term once
  np.testing.assert_allclose(m['latency_term'], m_sided['latency_term'] + m_upl['latency_term'],
                             rtol=1e-6)


def test_more_fast_routing_at_zero_backlog_increases_loss():
  probs = jnp.full((1, 4, 2), 0.5)
  backlog = jnp.zeros((1, 4))
  paddings = jnp.zeros((1, 4))

  def loss_of_fast_logit(logit):
    p_fast = jax.nn.sigmoid(logit)
    p = jnp.stack([jnp.full((1, 4), p_fast), jnp.full((1, 4), 1 - p_fast)], -1)
    return amortized_loss.amortized_terms(p, [1e7, 3e7], backlog, paddings, variant='backlog',
                                          lambda_amr=1.0, threshold=THRESHOLD)[0]

  assert jax.grad(loss_of_fast_logit)(0.0) > 0
  # Past the threshold the same routing costs nothing.
  busy = amortized_loss.amortized_terms(probs, [1e7, 3e7], backlog + 2 * THRESHOLD, paddings,
                                        variant='backlog', lambda_amr=1.0,
                                        threshold=THRESHOLD)[0]
  assert float(busy) == 0.0
  # The cost term pulls the other way: more fast routing is cheaper.
  cost_grad = jax.grad(lambda p: amortized_loss.amortized_terms(
      p, [1e7, 3e7], backlog, paddings, variant='none', lambda_cost=1.0)[0])(probs)
  assert np.all(cost_grad[..., 0] < cost_grad[..., 1])


def test_backlog_is_a_constant():
  probs, backlog, paddings = _batch(3)
  grad = jax.grad(lambda b: amortized_loss.amortized_terms(
      probs, [1e7, 3e7], b, paddings, variant='backlog', lambda_amr=1.0,
      threshold=THRESHOLD)[0])(jnp.asarray(backlog))
  assert np.all(grad == 0)


def test_single_branch_has_no_latency_penalty():
  probs = np.ones((1, 3, 1))
  loss, m = amortized_loss.amortized_terms(probs, [3e7], np.zeros((1, 3)), np.zeros((1, 3)),
                                           variant='backlog', lambda_cost=0.5, lambda_amr=1.0)
  np.testing.assert_allclose(m['latency_term'], 0.0)
  np.testing.assert_allclose(loss, 0.5)


def test_bad_options_raise():
  probs, backlog, paddings = _batch(4)
  with pytest.raises(amortized_loss.AmortizedLossConfigError, match='variant'):
    amortized_loss.amortized_terms(probs, [1, 2], backlog, paddings, variant='upl')
  with pytest.raises(amortized_loss.AmortizedLossConfigError, match='rate and hop'):
    amortized_loss.amortized_terms(probs, [1, 2], backlog, paddings, variant='final_upl')
  with pytest.raises(amortized_loss.AmortizedLossConfigError, match='len\\(branch_costs\\)'):
    amortized_loss.amortized_terms(probs, [1, 2, 3], backlog, paddings)
  with pytest.raises(amortized_loss.AmortizedLossConfigError, match='needs backlog'):
    amortized_loss.amortized_terms(probs, [1, 2], None, paddings, variant='backlog')
