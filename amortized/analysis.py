"""From evaluated utterances to the AmNet table's columns: FLOPs per frame, branch shares,
routing confidence and user-perceived latency on the simulated device; parameter counts.

Input rows come from `asr.evaluate.Evaluator(..., return_rows=True)`: each has the encoder's aux
outputs for its valid frames, `route` [n, K] (one-hot, argmax routing) and `probs` [n, K].
The latency is re-simulated here in float64 with `latency.simulate_np` from the hard routes and
the analytic branch costs, so the figure does not depend on the model's float32 scan.
"""
import jax
import numpy as np

from amortized import latency


def routing_summary(rows, branch_costs, branch_names, rate: float, hop: float) -> dict:
  costs = np.asarray(branch_costs, np.float64)
  total_frames, total_flops, upls = 0, 0.0, []
  counts = np.zeros(len(costs))
  confident = 0
  for row in rows:
    choice = np.asarray(row['route']).argmax(-1)
    frame_costs = costs[choice]
    total_frames += choice.size
    total_flops += frame_costs.sum()
    counts += np.bincount(choice, minlength=len(costs))
    confident += int((np.asarray(row['probs']).max(-1) >= 0.99).sum())
    if choice.size:
      upls.append(float(latency.simulate_np(frame_costs[None], rate=rate, hop=hop)['upl'][0]))
  upls = np.asarray(upls) * 1000.0
  frames = max(total_frames, 1)
  summary = {
      'flops_per_frame': total_flops / frames,
      'upl_median_ms': float(np.median(upls)) if upls.size else float('nan'),
      'upl_p90_ms': float(np.percentile(upls, 90)) if upls.size else float('nan'),
      'confident_share': confident / frames,
      'frames': total_frames,
  }
  for name, count in zip(branch_names, counts):
    summary[f'share_{name}'] = count / frames
  return summary


def routing_columns(encoder, rows) -> dict:
  """A routed encoder's table columns on one split (the rows of `Evaluator(return_rows=True)`):
  average MFLOPs per frame under its argmax routing, frames per branch, the share routed with
  p >= 0.99 (%), and UPL median / p90 (ms) on the simulated device."""
  names = [b.name for b in encoder.branches]
  s = routing_summary(rows, encoder.branch_costs(), names, encoder.routing.rate,
                      encoder.routing.hop)
  return {'mflops_per_frame': s['flops_per_frame'] / 1e6,
          'shares': ', '.join(f'{n} {100 * s[f"share_{n}"]:.0f}%' for n in names),
          'confident_share': 100 * s['confident_share'],
          'upl_median_ms': s['upl_median_ms'], 'upl_p90_ms': s['upl_p90_ms']}


def count_params(params, masks=None) -> tuple[int, int]:
  """(stored parameters, effective parameters: nonzero under the pruning masks)."""
  leaves = jax.tree_util.tree_leaves(params)
  total = int(sum(np.size(l) for l in leaves))
  if not masks:
    return total, total
  pruned = int(sum(np.size(m) - int(np.asarray(m).sum()) for m in jax.tree_util.tree_leaves(masks)))
  return total, total - pruned

