"""The pruned RNN-T joint: the full joint runs only on a band of S label positions per frame.

The plain loss evaluates the joint at every lattice cell, B x T x (U+1) x J activations and
x V logits, which on this codebase's base recognizer is about half of a training step. Almost
all of the alignment posterior lies within a few label positions of the best path, so:

1. A *simple* joint, logits = am_t + lm_u (two linear maps of the encoder and prediction
   outputs onto the vocabulary), gives a whole lattice cheaply: its log-normaliser over V is
   log(exp(am_t) . exp(lm_u)), one [T, V] x [V, U+1] product per utterance (`simple_lattice`).
   Its RNN-T loss is trained alongside (it also learns the alignment early).
2. Its posterior occupancy of each cell (the gradient of its log-likelihood) picks, per frame,
   the start `begin[t]` of the S consecutive positions with the most mass (`band_begin`),
   adjusted so that a path exists inside the band: begin[0] = 0, begin never decreases, rises
   by at most S-1 per frame, and the last frame's band holds U_b.
3. The real joint runs on [B, T, S] cells only, and its log-probabilities are put back into a
   full-size lattice with log(0) outside the band (`band_lattice`), so the one recursion of
   `asr.rnnt.loss` scores it. With S >= U+1 the band is the whole lattice and the pruned loss
   equals the plain one; with a smaller S it is the likelihood of the paths inside the band.
"""
import jax
import jax.numpy as jnp

from asr.rnnt import loss as loss_lib

_LOG_ZERO = loss_lib.LOG_ZERO


def simple_lattice(am, lm, labels, blank_id: int = 0):
  """Lattices of the additive joint am_t + lm_u, without materialising [B, T, U+1, V].

  Args:
    am: [B, T, V] encoder-side logits; lm: [B, U+1, V] prediction-side logits.
    labels: [B, U] label ids (padded positions pointing anywhere inside [0, V)).
  Returns:
    blank_logp [B, T, U+1] and label_logp [B, T, U], float32.
  """
  am = am.astype(jnp.float32)
  lm = lm.astype(jnp.float32)
  am_max = jax.lax.stop_gradient(am.max(-1, keepdims=True))            # [B, T, 1]
  lm_max = jax.lax.stop_gradient(lm.max(-1, keepdims=True))            # [B, U+1, 1]
  norm = jnp.einsum('btv,buv->btu', jnp.exp(am - am_max), jnp.exp(lm - lm_max))
  log_norm = jnp.log(norm) + am_max + jnp.swapaxes(lm_max, 1, 2)       # [B, T, U+1]
  blank = am[..., blank_id][:, :, None] + lm[..., blank_id][:, None, :] - log_norm
  onehot = jax.nn.one_hot(labels, am.shape[-1], dtype=am.dtype)         # [B, U, V]
  am_label = jnp.einsum('btv,buv->btu', am, onehot)
  lm_label = jnp.sum(lm[:, :-1] * onehot, axis=-1)                      # [B, U]
  label = am_label + lm_label[:, None, :] - log_norm[:, :, :-1]
  return blank, label


def band_begin(blank_logp, label_logp, logit_paddings, label_paddings, prune_range: int):
  """[B, T] int32 start of each frame's band of `prune_range` positions (no gradient)."""
  blank_logp = jax.lax.stop_gradient(blank_logp)
  label_logp = jax.lax.stop_gradient(label_logp)
  batch, frames, positions = blank_logp.shape
  if prune_range >= positions:
    return jnp.zeros((batch, frames), jnp.int32)
  size = prune_range
  num_frames = loss_lib.lengths(logit_paddings)
  num_labels = loss_lib.lengths(label_paddings)

  def log_likelihood(blank, label):
    return -loss_lib.rnnt_loss_from_logprobs(blank, label, logit_paddings, label_paddings).sum()

  # d logL / d logp(arc) is the arc's posterior; a cell's occupancy is that of the arcs leaving it.
  g_blank, g_label = jax.grad(log_likelihood, argnums=(0, 1))(blank_logp, label_logp)
  occupancy = g_blank + jnp.pad(g_label, ((0, 0), (0, 0), (0, 1)))       # [B, T, U+1]
  csum = jnp.pad(jnp.cumsum(occupancy, axis=-1), ((0, 0), (0, 0), (1, 0)))
  window = csum[..., size:] - csum[..., :-size]                          # [B, T, U+2-S]
  begin = jnp.argmax(window, axis=-1).astype(jnp.int32)
  cap = jnp.maximum(num_labels + 1 - size, 0)[:, None]
  t = jnp.arange(frames, dtype=jnp.int32)[None, :]
  valid = t < num_frames[:, None]
  begin = jnp.minimum(jax.lax.cummax(begin, axis=1), cap)                # never decreases
  begin = jnp.where(valid, begin, 0)
  last = jnp.maximum(num_frames - 1, 0)[:, None]
  begin = jnp.where(t == last, jnp.maximum(begin, cap), begin)           # the end is inside
  # Rise at most S-1 per frame: raise earlier frames (x = begin - (S-1) t never increases) ...
  step = size - 1
  x = begin - step * t
  x = jnp.flip(jax.lax.cummax(jnp.flip(x, 1), axis=1), 1)
  begin = jnp.where(valid, x + step * t, 0)
  # ... and start at 0 (clamp later frames down; begin - (S-1) t never increases from 0).
  y = jnp.minimum(jax.lax.cummin(begin - step * t, axis=1), 0)
  return jnp.clip(y + step * t, 0, cap).astype(jnp.int32)


def band_gather(pred, begin, prune_range: int):
  """pred [B, U+1, H] at positions begin[b, t] + k, k < S -> [B, T, S, H] (clipped to U)."""
  positions = pred.shape[1]
  index = jnp.clip(begin[..., None] + jnp.arange(prune_range), 0, positions - 1)  # [B, T, S]
  return jax.vmap(lambda p, i: p[i])(pred, index)


def band_lattice(logits, labels, begin, positions: int, blank_id: int = 0):
  """Band logits [B, T, S, V] -> full-size lattices with log(0) outside the band.

  Returns blank_logp [B, T, U+1] and label_logp [B, T, U] as `asr.rnnt.loss` reads them.
  """
  size = logits.shape[2]
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  index = begin[..., None] + jnp.arange(size)                                 # [B, T, S]
  padded_labels = jnp.pad(labels, ((0, 0), (0, 1)), constant_values=blank_id)   # [B, U+1]
  band_labels = jax.vmap(lambda l, i: l[jnp.clip(i, 0, positions - 1)])(padded_labels, index)
  band_blank = logp[..., blank_id]
  band_label = jnp.take_along_axis(logp, band_labels[..., None], axis=-1)[..., 0]
  # Scatter back: cell u of frame t is band slot u - begin[t] when that lies in [0, S).
  slot = jnp.arange(positions)[None, None, :] - begin[..., None]                # [B, T, U+1]
  inside = (slot >= 0) & (slot < size)
  slot = jnp.clip(slot, 0, size - 1)
  blank = jnp.where(inside, jnp.take_along_axis(band_blank, slot, axis=-1), _LOG_ZERO)
  label = jnp.where(inside, jnp.take_along_axis(band_label, slot, axis=-1), _LOG_ZERO)
  return blank, label[..., :-1]
