"""The pruned RNN-T joint (asr/rnnt/pruned.py) against the full joint and a numpy recursion.
tests/test_train.py trains a pruned model through the real loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from asr import rnnt
from asr.rnnt import pruned


def _inputs(seed=0, batch=3, frames=9, labels=5, vocab=7, hidden=6):
  rng = np.random.default_rng(seed)
  enc = rng.normal(size=(batch, frames, hidden)).astype(np.float32)
  pred = rng.normal(size=(batch, labels + 1, hidden)).astype(np.float32)
  w = rng.normal(size=(hidden, vocab)).astype(np.float32)
  ids = rng.integers(1, vocab, (batch, labels)).astype(np.int32)
  logit_pads = np.zeros((batch, frames), np.float32)
  logit_pads[1, frames - 2:] = 1.0
  label_pads = np.zeros((batch, labels), np.float32)
  label_pads[2, labels - 2:] = 1.0
  ids = np.where(label_pads > 0, 0, ids)
  return enc, pred, w, ids, logit_pads, label_pads


def _joint(w):
  return lambda e, p: jnp.tanh(e + p) @ w


def _numpy_nll(blank, label, frames, labels):
  """Brute-force alpha recursion over one utterance's lattice (float64)."""
  alpha = np.full((frames, labels + 1), -np.inf)
  alpha[0, 0] = 0.0
  for t in range(frames):
    for u in range(labels + 1):
      if t == 0 and u == 0:
        continue
      terms = []
      if t > 0:
        terms.append(alpha[t - 1, u] + blank[t - 1, u])
      if u > 0:
        terms.append(alpha[t, u - 1] + label[t, u - 1])
      alpha[t, u] = np.logaddexp.reduce(terms)
  return -(alpha[frames - 1, labels] + blank[frames - 1, labels])


# Compiled once per band width: op by op, the occupancy's gradient is most of a test's time.
_band_begin = jax.jit(pruned.band_begin, static_argnums=4)


def _pruned_nll(enc, pred, w, ids, logit_pads, label_pads, size, simple=None):
  simple = simple or pruned.simple_lattice(jnp.asarray(enc) @ w, jnp.asarray(pred) @ w, ids)
  begin = _band_begin(*simple, logit_pads, label_pads, size)
  band = pruned.band_gather(jnp.asarray(pred), begin, size)
  lattice = pruned.band_lattice(_joint(w)(jnp.asarray(enc)[:, :, None], band), ids, begin,
                                pred.shape[1])
  return rnnt.rnnt_loss_from_logprobs(*lattice, logit_pads, label_pads), begin, lattice


def test_simple_lattice_equals_log_softmax_of_the_sum():
  enc, pred, w, ids, _, _ = _inputs()
  am, lm = enc @ w, pred @ w
  blank, label = pruned.simple_lattice(jnp.asarray(am), jnp.asarray(lm), ids)
  logits = am[:, :, None, :] + lm[:, None, :, :]
  ref_blank, ref_label = rnnt.gather_logprobs(jnp.asarray(logits), ids)
  np.testing.assert_allclose(blank, ref_blank, atol=1e-5)
  np.testing.assert_allclose(label, ref_label, atol=1e-5)


def test_a_band_as_wide_as_the_lattice_is_the_full_loss_with_its_gradient():
  enc, pred, w, ids, logit_pads, label_pads = _inputs()
  size = pred.shape[1]

  def full(enc, pred):
    logits = _joint(w)(enc[:, :, None], pred[:, None])
    return rnnt.rnnt_loss(logits, logit_pads, ids, label_pads).sum()

  def band(enc, pred):
    return _pruned_nll(enc, pred, w, ids, logit_pads, label_pads, size)[0].sum()

  np.testing.assert_allclose(band(enc, pred), full(enc, pred), rtol=1e-5)
  for g_band, g_full in zip(jax.jit(jax.grad(band, (0, 1)))(enc, pred),
                             jax.jit(jax.grad(full, (0, 1)))(enc, pred)):
    np.testing.assert_allclose(g_band, g_full, atol=1e-4)


@pytest.mark.parametrize('size', [2, 3, 4])
def test_a_narrow_band_scores_the_paths_inside_it(size):
  enc, pred, w, ids, logit_pads, label_pads = _inputs(seed=size)
  nll, begin, _ = _pruned_nll(enc, pred, w, ids, logit_pads, label_pads, size)
  logits = np.asarray(_joint(w)(enc[:, :, None], pred[:, None]), np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  full = np.asarray(rnnt.rnnt_loss(jnp.asarray(logits, jnp.float32), logit_pads, ids,
                                   label_pads))
  for b in range(enc.shape[0]):
    frames, labels = int((logit_pads[b] == 0).sum()), int((label_pads[b] == 0).sum())
    # Reference: the full lattice with every cell outside the band set to log(0).
    u = np.arange(labels + 1)
    inside = (u[None] >= np.asarray(begin[b, :frames])[:, None]) & (
        u[None] < np.asarray(begin[b, :frames])[:, None] + size)
    blank = np.where(inside, logp[b, :frames, :labels + 1, 0], -np.inf)
    label = np.where(inside[:, :-1], np.take_along_axis(
        logp[b, :frames, :labels], ids[b, None, :labels, None], -1)[..., 0], -np.inf)
    ref = _numpy_nll(blank, label, frames, labels)
    assert np.isfinite(ref), (b, begin[b])
    np.testing.assert_allclose(nll[b], ref, rtol=1e-4)
    assert nll[b] >= full[b] - 1e-4        # fewer paths: never more likely


def test_band_starts_always_leave_a_path():
  rng = np.random.default_rng(0)
  batch, frames, labels, size = 64, 12, 14, 3
  blank = jnp.asarray(rng.normal(size=(batch, frames, labels + 1)) * 3, jnp.float32)
  label = jnp.asarray(rng.normal(size=(batch, frames, labels)) * 3, jnp.float32)
  logit_pads = (np.arange(frames)[None] >= rng.integers(1, frames + 1, batch)[:, None]) * 1.0
  label_pads = (np.arange(labels)[None] >= rng.integers(0, labels + 1, batch)[:, None]) * 1.0
  begin = np.asarray(_band_begin(blank, label, logit_pads, label_pads, size))
  for b in range(batch):
    t_b, u_b = int((logit_pads[b] == 0).sum()), int((label_pads[b] == 0).sum())
    s = begin[b, :t_b]
    assert s[0] == 0 and (np.diff(s) >= 0).all() and (np.diff(s) <= size - 1).all()
    if u_b <= (size - 1) * t_b:          # reachable at all with this band width
      assert s[-1] + size - 1 >= u_b, (s, u_b)
