"""A sparse diff's mask chosen before training, from the new data's gradients.

The sparse diff's default (`diffs.sparse_mask=magnitude`) trains the whole delta first and prunes
it by magnitude toward the budget over several rounds, so a large share of an update's steps goes
to entries it later drops. With `diffs.sparse_mask=fisher` the mask is fixed before the first
step: it keeps the entries with the largest sum of squared loss gradients over the update's first
`diffs.fisher_batches` training batches, taken at the model the device holds (a diagonal
empirical-Fisher estimate, as in the FISH mask of Sung et al., 2021, here from batch gradients
rather than per-example ones), and every step of the update trains exactly those entries.
"""
import jax
import jax.numpy as jnp
import numpy as np

from asr import sparsity
from asr import train as train_lib


def squared_gradients(cfg, model, params, data, stats, batches: int):
  """Sum over the first `batches` training batches of (d loss / d params)^2 at `params`."""
  step = jnp.zeros((), jnp.int32)
  key = jax.random.key(cfg.seed)

  @jax.jit
  def squared(p, batch):
    loss = lambda p: train_lib.compute_loss(model, {'params': p}, batch, stats, cfg, key, step,
                                            train=False)[0]
    return jax.tree.map(jnp.square, jax.grad(loss)(p))

  total = jax.tree.map(lambda p: np.zeros(np.shape(p), np.float32), params)
  for i in range(batches):
    batch = data.train_batch(i, train_lib.batch_sizes(cfg, data), cfg.seed)
    total = jax.tree.map(lambda t, g: t + np.asarray(g), total, squared(params, batch))
  return total


def fisher_mask(scores, eligible_delta, count: int):
  """Bool masks over the delta's leaves keeping the `count` largest scores (one global ranking);
  a leaf whose delta is empty (not eligible for a diff) gets an empty mask."""
  scores = jax.tree.map(lambda s, d: np.asarray(s, np.float32) if np.size(d) else
                        np.zeros(np.shape(d), np.float32), scores, eligible_delta)
  return sparsity.top_k_mask(scores, count)
