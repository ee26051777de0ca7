"""RNN-T loss against brute-force enumeration of alignments and finite differences."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from asr import rnnt

# Jitted once: eager op-by-op dispatch of the scan would dominate the test time.
rnnt_loss = jax.jit(rnnt.rnnt_loss, static_argnames='blank_id')

def brute_force_nll(logits: np.ndarray, labels: np.ndarray, blank_id: int = 0) -> float:
  """-log sum over every alignment of one unpadded sequence; logits [T, U+1, V]."""
  frames, positions, _ = logits.shape
  num_labels = positions - 1
  x = logits.astype(np.float64)
  logp = x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(
      -1, keepdims=True)
  paths = []
  # An alignment is T blanks and U labels in some order, ending with a blank.
  for label_slots in itertools.combinations(range(frames + num_labels - 1), num_labels):
    t = u = 0
    score = 0.0
    for slot in range(frames + num_labels):
      if slot in label_slots:
        score += logp[t, u, labels[u]]
        u += 1
      else:
        score += logp[t, u, blank_id]
        t += 1
    paths.append(score)
  return -np.logaddexp.reduce(paths)


def random_case(seed, batch, frames, max_labels, vocab, blank_id=0, scale=1.0):
  rng = np.random.default_rng(seed)
  logits = (scale * rng.normal(size=(batch, frames, max_labels + 1, vocab))).astype(np.float32)
  non_blank = [v for v in range(vocab) if v != blank_id]
  labels = rng.choice(non_blank, size=(batch, max_labels)).astype(np.int32)
  num_frames = rng.integers(1, frames + 1, size=batch)
  num_labels = rng.integers(0, max_labels + 1, size=batch)
  logit_paddings = (np.arange(frames)[None] >= num_frames[:, None]).astype(np.float32)
  label_paddings = (np.arange(max_labels)[None] >= num_labels[:, None]).astype(np.float32)
  return logits, logit_paddings, labels, label_paddings, num_frames, num_labels


@pytest.mark.parametrize('seed,batch,frames,max_labels,vocab,blank_id', [
    (0, 1, 1, 0, 2, 0), (1, 3, 4, 3, 5, 0), (2, 4, 3, 2, 3, 0), (3, 2, 4, 3, 4, 2),
    (4, 5, 2, 3, 5, 0), (5, 3, 4, 1, 2, 1)])
def test_matches_brute_force(seed, batch, frames, max_labels, vocab, blank_id):
  logits, logit_pads, labels, label_pads, num_frames, num_labels = random_case(
      seed, batch, frames, max_labels, vocab, blank_id)
  loss = rnnt_loss(logits, logit_pads, labels, label_pads, blank_id=blank_id)
  expected = [brute_force_nll(logits[b, :num_frames[b], :num_labels[b] + 1],
                              labels[b, :num_labels[b]], blank_id) for b in range(batch)]
  np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-5, atol=1e-4)


def test_zero_labels_is_sum_of_blanks():
  logits, logit_pads, labels, _, num_frames, _ = random_case(7, 3, 4, 2, 4)
  label_pads = np.ones_like(labels, np.float32)
  loss = rnnt_loss(logits, logit_pads, labels, label_pads)
  logp = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32))[:, :, 0, 0]
  expected = [-float(logp[b, :num_frames[b]].sum()) for b in range(3)]
  np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-5)


def test_fully_padded_sequence_gives_zero_loss_and_gradient():
  logits, logit_pads, labels, label_pads, _, _ = random_case(8, 3, 4, 3, 5)
  logit_pads[1] = 1.0
  loss_fn = lambda x: rnnt.rnnt_loss(x, logit_pads, labels, label_pads)
  loss = jax.jit(loss_fn)(logits)
  grad = jax.jit(jax.grad(lambda x: loss_fn(x).sum()))(logits)
  assert float(loss[1]) == 0.0
  assert np.all(np.asarray(grad[1]) == 0.0)
  assert np.all(np.asarray(loss)[[0, 2]] > 0)


def test_gradient_matches_finite_differences_float64():
  with jax.enable_x64(True):
    logits, logit_pads, labels, label_pads, num_frames, num_labels = random_case(9, 3, 3, 2, 4)
    logits = logits.astype(np.float64)
    weights = np.array([1.0, -0.7, 2.0])      # distinct per sequence: catches batch mix-ups

    @jax.jit
    def objective(x):
      return jnp.sum(weights * rnnt.rnnt_loss(x, logit_pads, labels, label_pads))

    grad = np.asarray(jax.grad(objective)(logits))
    assert grad.dtype == np.float64
    eps = 1e-6
    numeric = np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
      step = np.zeros_like(logits)
      step[index] = eps
      numeric[index] = (objective(logits + step) - objective(logits - step)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, atol=1e-7, rtol=1e-6)
    # Padded frames and padded label positions get exactly zero gradient.
    for b in range(3):
      assert np.all(grad[b, num_frames[b]:] == 0)
      assert np.all(grad[b, :, num_labels[b] + 1:] == 0)


@pytest.mark.parametrize('scale', [30.0, 1e3, 1e5])
def test_extreme_logits_stay_finite(scale):
  logits, logit_pads, labels, label_pads, _, _ = random_case(10, 3, 5, 3, 6, scale=scale)
  loss, grad = jax.jit(jax.value_and_grad(
      lambda x: rnnt.rnnt_loss(x, logit_pads, labels, label_pads).sum()))(logits)
  assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grad)))
  if scale <= 30:   # still representable: float32 result agrees with float64 brute force
    losses = rnnt_loss(logits, logit_pads, labels, label_pads)
    _, _, _, _, num_frames, num_labels = random_case(10, 3, 5, 3, 6, scale=scale)
    expected = [brute_force_nll(logits[b, :num_frames[b], :num_labels[b] + 1],
                                labels[b, :num_labels[b]]) for b in range(3)]
    np.testing.assert_allclose(np.asarray(losses), expected, rtol=1e-5)


def test_fused_gather_matches_log_softmax_values_and_gradient():
  logits, _, labels, _, _, _ = random_case(11, 2, 3, 4, 7, blank_id=3)
  cotangents = [np.random.default_rng(0).normal(size=s).astype(np.float32)
                for s in [(2, 3, 5), (2, 3, 4)]]

  def reference(x):
    logp = jax.nn.log_softmax(x)
    return logp[..., 3], jnp.take_along_axis(logp[:, :, :-1], labels[:, None, :, None],
                                             -1)[..., 0]

  fused, fused_vjp = jax.vjp(lambda x: rnnt.gather_logprobs(x, labels, 3), logits)
  plain, plain_vjp = jax.vjp(reference, logits)
  for a, b in zip(fused, plain):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(fused_vjp(tuple(cotangents))[0], plain_vjp(tuple(cotangents))[0],
                             rtol=1e-5, atol=1e-6)


def _tiny_joint(seed, enc_dim, pred_dim, hidden, vocab):
  rng = np.random.default_rng(seed)
  params = {'we': rng.normal(size=(enc_dim, hidden)) / np.sqrt(enc_dim),
            'wp': rng.normal(size=(pred_dim, hidden)) / np.sqrt(pred_dim),
            'wo': rng.normal(size=(hidden, vocab)) / np.sqrt(hidden),
            'bo': rng.normal(size=(vocab,))}
  params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)

  def joint(p, enc, pred):
    return jnp.tanh(enc @ p['we'] + pred @ p['wp']) @ p['wo'] + p['bo']
  return params, joint


@pytest.mark.parametrize('time_chunk', [3, 16])
def test_lean_equals_plain_values_and_gradients(time_chunk):
  batch, frames, max_labels, vocab, enc_dim, pred_dim = 3, 7, 3, 6, 5, 4
  params, joint = _tiny_joint(12, enc_dim, pred_dim, 8, vocab)
  _, logit_pads, labels, label_pads, _, _ = random_case(13, batch, frames, max_labels, vocab)
  rng = np.random.default_rng(14)
  enc = jnp.asarray(rng.normal(size=(batch, frames, enc_dim)), jnp.float32)
  pred = jnp.asarray(rng.normal(size=(batch, max_labels + 1, pred_dim)), jnp.float32)
  weights = jnp.array([1.0, 0.5, -2.0])

  def plain(p, e, q):
    logits = joint(p, e[:, :, None], q[:, None])
    return jnp.sum(weights * rnnt.rnnt_loss(logits, logit_pads, labels, label_pads))

  def lean(p, e, q):
    return jnp.sum(weights * rnnt.rnnt_loss_lean(
        e, q, lambda a, b: joint(p, a, b), logit_pads, labels, label_pads,
        time_chunk=time_chunk))

  value_plain, grads_plain = jax.jit(jax.value_and_grad(plain, argnums=(0, 1, 2)))(params, enc,
                                                                                 pred)
  value_lean, grads_lean = jax.jit(jax.value_and_grad(lean, argnums=(0, 1, 2)))(params, enc,
                                                                               pred)
  np.testing.assert_allclose(value_lean, value_plain, rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(grads_lean), jax.tree_util.tree_leaves(grads_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_shape_mismatch_raises_named_error():
  logits = np.zeros((2, 3, 4, 5), np.float32)
  with pytest.raises(rnnt.RNNTShapeError, match='labels shape'):
    rnnt.rnnt_loss(logits, np.zeros((2, 3)), np.zeros((2, 4), np.int32), np.zeros((2, 4)))
  with pytest.raises(rnnt.RNNTShapeError, match='logit_paddings shape'):
    rnnt.rnnt_loss(logits, np.zeros((2, 4)), np.ones((2, 3), np.int32), np.zeros((2, 3)))


def test_lean_backward_needs_less_memory_than_plain():
  """Compiled temp memory of value_and_grad: the lean loss never holds [B, T, U+1, V]."""
  batch, frames, max_labels, vocab, dim = 2, 64, 10, 256, 16
  params, joint = _tiny_joint(15, dim, dim, dim, vocab)
  enc = jnp.zeros((batch, frames, dim))
  pred = jnp.zeros((batch, max_labels + 1, dim))
  pads = (jnp.zeros((batch, frames)), jnp.zeros((batch, max_labels)))
  labels = jnp.ones((batch, max_labels), jnp.int32)

  def plain(p):
    logits = joint(p, enc[:, :, None], pred[:, None])
    return rnnt.rnnt_loss(logits, pads[0], labels, pads[1]).sum()

  def lean(p):
    return rnnt.rnnt_loss_lean(enc, pred, lambda a, b: joint(p, a, b), pads[0], labels, pads[1],
                               time_chunk=8).sum()

  def temp_bytes(fn):
    return jax.jit(jax.grad(fn)).lower(params).compile().memory_analysis().temp_size_in_bytes

  logits_bytes = 4 * batch * frames * (max_labels + 1) * vocab
  assert temp_bytes(plain) >= logits_bytes          # holds at least the full logits
  assert temp_bytes(lean) < logits_bytes / 2


def test_garbage_in_padded_lattice_cells_does_not_leak():
  logits, logit_pads, labels, label_pads, num_frames, num_labels = random_case(16, 4, 4, 3, 5)
  logp = jax.nn.log_softmax(jnp.asarray(logits))
  blank = np.array(logp[..., 0])
  label = np.array(jnp.take_along_axis(logp[:, :, :-1], labels[:, None, :, None], -1)[..., 0])
  dirty_blank, dirty_label = blank.copy(), label.copy()
  for b in range(4):
    for array in (dirty_blank, dirty_label):
      array[b, num_frames[b]:] = np.nan
      array[b, :, num_labels[b] + 1:] = -np.inf
    dirty_label[b, :, num_labels[b]:] = np.nan
  fn = jax.jit(jax.value_and_grad(
      lambda x, y: rnnt.rnnt_loss_from_logprobs(x, y, logit_pads, label_pads).sum(), (0, 1)))
  clean_value, clean_grads = fn(blank, label)
  dirty_value, dirty_grads = fn(dirty_blank, dirty_label)
  np.testing.assert_allclose(dirty_value, clean_value, rtol=1e-6)
  for dirty, clean in zip(dirty_grads, clean_grads):
    assert np.all(np.isfinite(dirty))
    np.testing.assert_allclose(dirty, clean, rtol=1e-6)


def test_padded_labels_may_hold_anything_but_valid_ones_are_checked():
  logits, logit_pads, labels, label_pads, _, _ = random_case(17, 3, 4, 3, 5)
  label_pads[:, 2:] = 1.0
  junk = labels.copy()
  junk[:, 2:] = -1
  np.testing.assert_allclose(rnnt_loss(logits, logit_pads, junk, label_pads),
                             rnnt_loss(logits, logit_pads, labels, label_pads), rtol=1e-6)
  bad = labels.copy()
  bad[1, 0] = 5                                     # == V
  with pytest.raises(rnnt.RNNTLabelError, match=r'labels\[1, 0\] = 5'):
    rnnt.rnnt_loss(logits, logit_pads, bad, label_pads)
  bad[1, 0] = 0                                     # blank inside the transcript
  with pytest.raises(rnnt.RNNTLabelError, match='blank 0'):
    rnnt.rnnt_loss(logits, logit_pads, bad, label_pads)


def brute_force_expected_frames(logits, labels, blank_id=0):
  """E[emission frame of each label] over every alignment of one sequence, by enumeration."""
  frames, positions, _ = logits.shape
  num_labels = positions - 1
  x = logits.astype(np.float64)
  logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
  scores, emitted_at = [], []
  for label_slots in itertools.combinations(range(frames + num_labels - 1), num_labels):
    t = u = 0
    score, at = 0.0, []
    for slot in range(frames + num_labels):
      if slot in label_slots:
        score += logp[t, u, labels[u]]
        at.append(t)
        u += 1
      else:
        score += logp[t, u, blank_id]
        t += 1
    scores.append(score)
    emitted_at.append(at)
  weights = np.exp(np.array(scores) - np.logaddexp.reduce(scores))
  return weights @ np.array(emitted_at, np.float64)


def test_emission_positions_match_brute_force():
  from asr.rnnt import alignment
  logits, logit_pads, labels, label_pads, _, _ = random_case(3, 4, 5, 3, 4, scale=2.0)
  blank, label = rnnt.gather_logprobs(jnp.asarray(logits), jnp.asarray(labels))
  # Compiled: op by op, the occupancy's gradient through the scan takes seconds.
  occ = np.asarray(jax.jit(alignment.label_occupancy)(blank, label, jnp.asarray(logit_pads),
                                                      jnp.asarray(label_pads)))
  pos = np.asarray(alignment.emission_position(jnp.asarray(occ), jnp.asarray(logit_pads),
                                               jnp.asarray(label_pads)))
  checked = 0
  for b in range(4):
    t_b, u_b = int((logit_pads[b] < 0.5).sum()), int((label_pads[b] < 0.5).sum())
    if u_b == 0:
      assert pos[b] == 0 and np.all(occ[b] == 0)
      continue
    checked += 1
    expected = brute_force_expected_frames(logits[b, :t_b, :u_b + 1], labels[b, :u_b])
    np.testing.assert_allclose(occ[b, :t_b, :u_b].sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(occ[b, :t_b, :u_b].T @ np.arange(t_b), expected, atol=1e-4)
    np.testing.assert_allclose(pos[b], (expected / t_b).mean(), atol=1e-5)
    assert np.all(occ[b, t_b:] == 0) and np.all(occ[b, :, u_b:] == 0)
  assert checked >= 2
