"""The amortized-network loss terms added to the RNN-T loss: expected cost and latency penalty.

docs/DESIGN.md ("The amortized loss and its variants") fills the paper's unpublished loss with

    L = L_rnnt + lambda_cost * mean_t E[cost_t] / cost_slow
               + lambda_amr  * mean_t p_t(fast) * g(b_t),

where g is 1 at zero backlog and 0 past a threshold backlog: routing to the fast branch is
penalised only while the device is keeping up (the article's penalty "for routing frames to the
fast encoder when we don't have a significant audio backlog").

Generalisation to K >= 2 branches with costs c_k (c_max the most expensive branch): a branch is
"fast" to the degree it saves work, and the backlog penalty is

    mean_t sum_k p_t(k) * w_k * g(b_t),   w_k = (c_max - c_k) / c_max

For two branches this is (1 - c_fast / c_slow) * p_t(fast) * g(b_t): the formula above times
the constant relative saving of the fast branch, which lambda_amr absorbs. A single branch (the
baseline) has all w_k = 0: no latency penalty.

Variants of the latency term (`variant`):
  'none'                no latency term;
  'backlog'             the penalty above;
  'final_upl'           UPL / hop from the differentiable simulator run on the expected costs
                        (needs `rate` and `hop`; `backlog` is ignored and may be None);
  'slow_under_backlog'  mean_t sum_k p_t(k) * v_k * (1 - g(b_t)), v_k = (c_k - c_min) /
                        (c_max - c_min): penalises slow routing while the device is behind
                        (exactly p_t(slow) * (1 - g) for two branches);
  'two_sided'           'backlog' + 'slow_under_backlog': fast routing is penalised while the
                        device keeps up and slow routing while it is behind, so the routing has a
                        target backlog (the threshold) to hold, whatever the RNN-T loss prefers.
                        'backlog' alone leaves only lambda_cost to push towards the fast branch
                        once the backlog is past the threshold; a model whose RNN-T loss prefers
                        the slow branch then lets the backlog grow (RESULTS.md).
  'two_sided_upl'       'two_sided' + 'final_upl': holding the backlog near the threshold
                        still leaves UPL at one slow frame's cost whenever the last frame goes
                        slow (45 ms on the CPU table's device, over the 30 ms p90 target); the
                        final-UPL term prices exactly that last stretch.

Backlog input: pass the *pending* backlog the arbitrator saw before choosing frame t
(`latency.simulate_*()['pending']` or the arbitrator scan's own), so that g = 1 is reachable; the
post-processing backlog b_t = f_t - a_t includes frame t's own cost and is never 0. The backlog
is a constant for this loss (stop_gradient): the penalty shapes the routing given the backlog,
and differentiating through the backlog would reward fast routing for lowering it.

g shapes (`g_shape`): 'linear' g(b) = clip(1 - b/threshold, 0, 1); 'smooth' g(b) = 1 -
smoothstep(b/threshold) with smoothstep(x) = 3x^2 - 2x^3 on [0, 1]: the same end points, with
zero slope at b = 0 and b = threshold.

Means are over the valid frames of the whole batch (each frame weighs the same); the 'final_upl'
term is the mean over utterances that have at least one valid frame.
"""
from typing import Optional

import jax
import jax.numpy as jnp

from amortized import latency

VARIANTS = ('none', 'backlog', 'final_upl', 'slow_under_backlog', 'two_sided', 'two_sided_upl')
G_SHAPES = ('linear', 'smooth')


class AmortizedLossConfigError(ValueError):
  """An amortized-loss option or input that cannot be used."""


def backlog_gate(backlog, threshold: float, shape: str = 'linear'):
  """g(b): 1 at zero backlog, 0 at and beyond `threshold` seconds."""
  if shape not in G_SHAPES:
    raise AmortizedLossConfigError(f'amortized_loss: g_shape={shape!r} not in {G_SHAPES}')
  x = jnp.clip(backlog / threshold, 0.0, 1.0)
  if shape == 'linear':
    return 1.0 - x
  return 1.0 - x * x * (3.0 - 2.0 * x)


def fast_weights(branch_costs):
  """w_k = (c_max - c_k) / c_max: how "fast" branch k is (0 for the most expensive branch)."""
  costs = jnp.asarray(branch_costs, jnp.float32)
  c_max = jnp.max(costs)
  return jnp.where(c_max > 0, (c_max - costs) / jnp.where(c_max > 0, c_max, 1.0), 0.0)


def slow_weights(branch_costs):
  """v_k = (c_k - c_min) / (c_max - c_min): 1 for the most expensive branch, 0 for the cheapest."""
  costs = jnp.asarray(branch_costs, jnp.float32)
  c_max, c_min = jnp.max(costs), jnp.min(costs)
  span = c_max - c_min
  return jnp.where(span > 0, (costs - c_min) / jnp.where(span > 0, span, 1.0), 0.0)


def _masked_mean(values, valid):
  return jnp.sum(values * valid) / jnp.maximum(jnp.sum(valid), 1.0)


def amortized_terms(probs, branch_costs, backlog, paddings, *, variant: str = 'backlog',
                    lambda_cost: float = 0.0, lambda_amr: float = 0.0,
                    threshold: float = 0.1, g_shape: str = 'linear',
                    rate: Optional[float] = None, hop: Optional[float] = None):
  """The loss added to L_rnnt, and its parts for logging.

  Args:
    probs: [B, T, K] routing probabilities per frame (soft or straight-through hard samples).
    branch_costs: [K] FLOPs per frame of each branch (include the arbitrator's overhead in each
      if it should count; it does not change the penalty weights' ordering).
    backlog: [B, T] seconds; the pending backlog before frame t (see module docstring). Unused
      (may be None) for variants 'none' and 'final_upl'.
    paddings: [B, T], 1.0 at padded frames; they are left out of every mean.
    variant: one of VARIANTS.
    lambda_cost, lambda_amr: weights of the cost and latency terms.
    threshold: backlog (seconds) at which g reaches 0.
    g_shape: 'linear' or 'smooth'.
    rate, hop: FLOP/s and seconds per frame, for 'final_upl'.
  Returns:
    (extra_loss scalar, metrics dict of scalars).
  """
  if variant not in VARIANTS:
    raise AmortizedLossConfigError(f'amortized_loss: variant={variant!r} not in {VARIANTS}')
  if not threshold > 0:
    raise AmortizedLossConfigError(f'amortized_loss: threshold must be > 0, got {threshold!r}')
  probs = jnp.asarray(probs)
  costs = jnp.asarray(branch_costs, jnp.float32)
  if probs.ndim != 3 or costs.shape != probs.shape[-1:]:
    raise AmortizedLossConfigError(
        f'amortized_loss: probs {probs.shape} must be [B, T, K] with K = len(branch_costs) '
        f'= {costs.shape}')
  if tuple(jnp.shape(paddings)) != probs.shape[:2]:
    raise AmortizedLossConfigError(
        f'amortized_loss: paddings shape {jnp.shape(paddings)} != probs[:2] {probs.shape[:2]}')
  valid = 1.0 - jnp.asarray(paddings, jnp.float32)
  c_max = jnp.max(costs)

  expected_cost = jnp.einsum('btk,k->bt', probs, costs)             # FLOPs per frame
  cost_ratio = _masked_mean(expected_cost / c_max, valid)
  metrics = dict(expected_cost_ratio=cost_ratio,
                 expected_flops_per_frame=_masked_mean(expected_cost, valid),
                 fast_fraction=_masked_mean(
                     jnp.einsum('btk,k->bt', probs, (costs < c_max).astype(probs.dtype)), valid))

  two_sided = ('two_sided', 'two_sided_upl')
  latency_term = jnp.zeros((), jnp.float32)
  if variant in ('backlog', 'slow_under_backlog') + two_sided:
    if backlog is None or tuple(jnp.shape(backlog)) != probs.shape[:2]:
      raise AmortizedLossConfigError(
          f'amortized_loss: variant={variant!r} needs backlog of shape {probs.shape[:2]}, got '
          f'{None if backlog is None else jnp.shape(backlog)}')
    backlog = jax.lax.stop_gradient(jnp.asarray(backlog, jnp.float32))
    gate = backlog_gate(backlog, threshold, g_shape)
    metrics['mean_gate'] = _masked_mean(gate, valid)
    metrics['mean_backlog'] = _masked_mean(backlog, valid)
    if variant in ('backlog',) + two_sided:
      fast = jnp.einsum('btk,k->bt', probs, fast_weights(costs))
      latency_term += _masked_mean(fast * gate, valid)
    if variant in ('slow_under_backlog',) + two_sided:
      slow = jnp.einsum('btk,k->bt', probs, slow_weights(costs))
      latency_term += _masked_mean(slow * (1.0 - gate), valid)
  if variant in ('final_upl', 'two_sided_upl'):
    if rate is None or hop is None:
      raise AmortizedLossConfigError(
          f'amortized_loss: variant={variant!r} needs rate and hop, got rate={rate!r}, '
          f'hop={hop!r}')
    sim = latency.simulate_jax(expected_cost, paddings, rate=rate, hop=hop)
    has_frames = (jnp.sum(valid, axis=1) > 0).astype(jnp.float32)
    upl = jnp.sum(sim['upl'] * has_frames) / jnp.maximum(jnp.sum(has_frames), 1.0)
    metrics['expected_upl'] = upl
    latency_term += upl / hop

  metrics['cost_term'] = cost_ratio
  metrics['latency_term'] = latency_term
  extra = lambda_cost * cost_ratio + lambda_amr * latency_term
  metrics['amortized_loss'] = extra
  return extra, metrics
