"""Where a model puts its label emissions: the posterior over RNN-T alignments.

`label_occupancy[b, t, u]` is the posterior probability that label y_{u+1} is emitted at frame
t, summed over all alignments weighted by the model: the derivative of the log-likelihood with
respect to the lattice's label log-probabilities (a forward-backward pass, here by autodiff).

`emission_position` summarises it per utterance: the mean over labels of E[t] / T, 0 when every
label is emitted at the first frame, about 0.5 when emissions follow speech through the
utterance. It is the symptom of a known failure: an RNN-T whose prediction network learns the
text before the encoder learns the audio can emit every label at the first frames (position
near 0), an LM with no acoustics; its greedy output is then the same sentence for every input.
On this codebase's corpus that happened without the CTC head (README, RESULTS.md).
"""
import jax
import jax.numpy as jnp

from asr.rnnt import loss as loss_lib


def label_occupancy(blank_logp, label_logp, logit_paddings, label_paddings):
  """[B, T, U] posterior emission probabilities (zero at padded frames and labels)."""
  def log_likelihood(label_logp):
    return -loss_lib.rnnt_loss_from_logprobs(blank_logp, label_logp, logit_paddings,
                                             label_paddings).sum()
  return jax.grad(log_likelihood)(label_logp)


def emission_position(occupancy, logit_paddings, label_paddings):
  """[B] mean over valid labels of the expected emission frame / number of frames."""
  frames = jnp.maximum(jnp.sum(logit_paddings < 0.5, axis=1), 1)
  time = jnp.arange(occupancy.shape[1], dtype=jnp.float32)
  expected_t = jnp.einsum('btu,t->bu', occupancy, time)
  valid = label_paddings < 0.5
  per_label = jnp.where(valid, expected_t / frames[:, None], 0.0)
  return per_label.sum(1) / jnp.maximum(valid.sum(1), 1)
