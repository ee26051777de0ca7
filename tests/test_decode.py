"""Greedy and beam RNN-T decoding on small random and hand-made models."""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from asr import rnnt

BLANK = 0


# ---------------------------------------------------------------------------------------------
# Models: a random embedding + tanh-RNN predictor with an additive tanh joint, and a table model
# whose label probabilities depend only on (frame, last label), for exact enumeration.

def random_model(seed, vocab=6, enc_dim=4, pred_dim=5, hidden=8, blank_bias=0.0):
  rng = np.random.default_rng(seed)
  p = {'embed': rng.normal(size=(vocab, pred_dim)),
       'recur': rng.normal(size=(pred_dim, pred_dim)) / np.sqrt(pred_dim),
       'enc': rng.normal(size=(enc_dim, hidden)),
       'pred': rng.normal(size=(pred_dim, hidden)),
       'out': 2.0 * rng.normal(size=(hidden, vocab)),
       'bias': np.eye(vocab)[BLANK] * blank_bias}
  p = {k: v.astype(np.float32) for k, v in p.items()}

  def pred_step(h, label):
    h = jnp.tanh(jnp.asarray(p['embed'])[label] + h @ p['recur'])
    return h, h

  def joint(enc_frame, pred_out):
    return jnp.tanh(enc_frame @ p['enc'] + pred_out @ p['pred']) @ p['out'] + p['bias']

  def np_pred_step(h, label):
    h = np.tanh(p['embed'][label] + h @ p['recur'])
    return h, h

  def np_joint(enc_frame, pred_out):
    return np.tanh(enc_frame @ p['enc'] + pred_out @ p['pred']) @ p['out'] + p['bias']

  init_state = lambda batch: jnp.zeros((batch, pred_dim), jnp.float32)
  return pred_step, joint, np_pred_step, np_joint, init_state


def table_model(table):
  """table [T, V, V]: logits at frame t given the last label (blank = start)."""
  table = jnp.asarray(table, jnp.float32)
  vocab = table.shape[-1]

  def pred_step(last, label):
    return jax.nn.one_hot(label, vocab), label

  def joint(enc_frame, pred_out):           # enc_frame = one-hot of the frame index
    return jnp.einsum('bt,bl,tlv->bv', enc_frame, pred_out, table)

  frames = table.shape[0]
  enc = np.eye(frames, dtype=np.float32)
  return pred_step, joint, enc, lambda batch: jnp.zeros((batch,), jnp.int32)


def reference_greedy(enc, num_frames, np_pred_step, np_joint, pred_dim, max_symbols):
  """Plain-Python greedy decoding of one utterance."""
  out, h = np_pred_step(np.zeros(pred_dim, np.float32), BLANK)
  tokens = []
  for t in range(num_frames):
    for _ in range(max_symbols):
      best = int(np.argmax(np_joint(enc[t], out)))
      if best == BLANK:
        break
      tokens.append(best)
      out, h = np_pred_step(h, best)
  return tokens


def rows(tokens, paddings):
  tokens, paddings = np.asarray(tokens), np.asarray(paddings)
  return [list(t[p < 0.5]) for t, p in zip(tokens, paddings)]


def random_batch(seed, batch, frames, enc_dim):
  rng = np.random.default_rng(seed)
  enc = rng.normal(size=(batch, frames, enc_dim)).astype(np.float32)
  lengths = rng.integers(0, frames + 1, size=batch)
  lengths[0] = frames
  paddings = (np.arange(frames)[None] >= lengths[:, None]).astype(np.float32)
  return enc, paddings, lengths


# ---------------------------------------------------------------------------------------------
# Greedy.

@pytest.mark.parametrize('max_symbols', [1, 3])
def test_greedy_matches_python_reference(max_symbols):
  pred_step, joint, np_pred, np_joint, init_state = random_model(0, blank_bias=1.0)
  enc, paddings, lengths = random_batch(1, 5, 12, 4)
  decode = jax.jit(functools.partial(rnnt.greedy_decode, pred_step=pred_step, joint=joint,
                                     max_symbols_per_frame=max_symbols))
  tokens, token_paddings = decode(enc, paddings, init_state(5))
  assert tokens.shape == (5, 12 * max_symbols) and tokens.dtype == jnp.int32
  got = rows(tokens, token_paddings)
  expected = [reference_greedy(enc[b], lengths[b], np_pred, np_joint, 5, max_symbols)
              for b in range(5)]
  assert got == expected
  # Padding is a suffix, holding blank_id.
  tp = np.asarray(token_paddings)
  assert np.all(np.diff(tp, axis=1) >= 0)
  assert np.all(np.asarray(tokens)[tp > 0.5] == BLANK)
  # The case is not trivial: labels were emitted, and with 3 allowed, some frame hit the cap.
  assert sum(map(len, got)) >= 10
  if max_symbols == 3:
    assert max(map(len, got)) > lengths.max()


def test_streaming_one_frame_at_a_time_equals_offline():
  pred_step, joint, _, _, init_state = random_model(2, blank_bias=1.0)
  enc, paddings, _ = random_batch(3, 3, 10, 4)
  offline = rows(*jax.jit(functools.partial(
      rnnt.greedy_decode, pred_step=pred_step, joint=joint))(enc, paddings, init_state(3)))
  step = jax.jit(functools.partial(rnnt.greedy_step, pred_step=pred_step, joint=joint))
  carry = rnnt.greedy_init(init_state(3), pred_step)
  streamed = [[] for _ in range(3)]
  for t in range(enc.shape[1]):
    carry, tokens, token_paddings = step(carry, enc[:, t], paddings[:, t])
    for b, row in enumerate(rows(tokens, token_paddings)):
      streamed[b] += row
  assert streamed == offline
  assert sum(map(len, offline)) > 0


# ---------------------------------------------------------------------------------------------
# Beam search.

def test_beam_width_one_equals_greedy():
  for seed in range(3):
    pred_step, joint, _, _, init_state = random_model(10 + seed, blank_bias=0.5)
    enc, paddings, lengths = random_batch(20 + seed, 3, 8, 4)
    greedy = rows(*jax.jit(functools.partial(
        rnnt.greedy_decode, pred_step=pred_step, joint=joint))(enc, paddings, init_state(3)))
    beams = rnnt.beam_search_batch(enc, paddings, init_state(3), jax.jit(pred_step),
                                   jax.jit(joint), beam_width=1, max_symbols_per_frame=3)
    assert [tokens for tokens, _ in beams] == greedy
    assert any(greedy)


def exhaustive_best(table, max_symbols):
  """Best label sequence and its log-probability, summed over every alignment (cap included)."""
  logp = table - np.log(np.exp(table).sum(-1, keepdims=True))
  frames, vocab, _ = table.shape
  labels = [v for v in range(vocab) if v != BLANK]
  totals = {(): 0.0}
  for t in range(frames):
    nxt = {}
    for seq, score in totals.items():
      for count in range(max_symbols + 1):
        for emitted in itertools.product(labels, repeat=count):
          s, last = score, (seq[-1] if seq else BLANK)
          for label in emitted:
            s += logp[t, last, label]
            last = label
          if count < max_symbols:
            s += logp[t, last, BLANK]
          key = seq + emitted
          nxt[key] = np.logaddexp(nxt.get(key, -np.inf), s)
    totals = nxt
  best = max(totals, key=totals.get)
  return list(best), totals[best]


def test_wide_beam_is_exhaustive_on_table_model():
  for seed in range(3):
    # 2 frames, 2 labels, <= 2 per frame: at most 49 hypotheses in a pool, all fit the beam.
    table = 2.0 * np.random.default_rng(seed).normal(size=(2, 3, 3))
    pred_step, joint, enc, init_state = table_model(table)
    tokens, score = rnnt.beam_search(enc, init_state(1), jax.jit(pred_step), jax.jit(joint),
                                     beam_width=64, max_symbols_per_frame=2)
    best, best_score = exhaustive_best(table, 2)
    assert tokens == best
    np.testing.assert_allclose(score, best_score, rtol=1e-5)


def test_beam_beats_greedy_where_greedy_is_suboptimal():
  probs = np.array([
      [[.15, .45, .40], [.40, .30, .30], [.98, .01, .01]],   # frame 0; rows: last = start, a, b
      [[.90, .05, .05], [.40, .30, .30], [.98, .01, .01]]])  # frame 1
  table = np.log(probs)
  pred_step, joint, enc, init_state = table_model(table)
  greedy = rows(*rnnt.greedy_decode(enc[None], np.zeros((1, 2), np.float32), init_state(1),
                                    pred_step, joint, max_symbols_per_frame=2))[0]
  tokens_1, score_1 = rnnt.beam_search(enc, init_state(1), jax.jit(pred_step), jax.jit(joint),
                                       beam_width=1, max_symbols_per_frame=2)
  tokens_4, score_4 = rnnt.beam_search(enc, init_state(1), jax.jit(pred_step), jax.jit(joint),
                                       beam_width=4, max_symbols_per_frame=2)
  tokens_64, score_64 = rnnt.beam_search(enc, init_state(1), jax.jit(pred_step),
                                         jax.jit(joint), beam_width=64, max_symbols_per_frame=2)
  assert greedy == tokens_1 == [1]
  assert tokens_4 == tokens_64 == [2]
  np.testing.assert_allclose(score_1, np.log(.45 * .4 * .4), rtol=1e-5)  # greedy's own path
  assert score_4 > score_1
  # "b" emitted at frame 0 (kept by beam 4) or at frame 1 (pruned at width 4, kept at 64).
  np.testing.assert_allclose(score_4, np.log(.40 * .98 * .98), rtol=1e-5)
  np.testing.assert_allclose(score_64, np.log(.40 * .98 * .98 + .15 * .05 * .98), rtol=1e-5)


def test_beam_search_batch_respects_padding():
  pred_step, joint, _, _, init_state = random_model(30, blank_bias=0.5)
  enc, paddings, lengths = random_batch(31, 3, 8, 4)
  pred_step, joint = jax.jit(pred_step), jax.jit(joint)
  batch = rnnt.beam_search_batch(enc, paddings, init_state(3), pred_step, joint, beam_width=3)
  for b in range(3):
    alone = rnnt.beam_search(enc[b, :lengths[b]], init_state(1), pred_step, joint, beam_width=3)
    assert batch[b][0] == alone[0]
    np.testing.assert_allclose(batch[b][1], alone[1], rtol=1e-6)


def test_bad_inputs_raise_named_errors():
  pred_step, joint, _, _, init_state = random_model(0)
  with pytest.raises(rnnt.DecodeError, match='leading dim 1'):
    rnnt.beam_search(np.zeros((3, 4), np.float32), init_state(2), pred_step, joint)
  with pytest.raises(rnnt.DecodeError, match=r'enc must be \[T, D\]'):
    rnnt.beam_search(np.zeros((1, 3, 4), np.float32), init_state(1), pred_step, joint)
  with pytest.raises(rnnt.DecodeError, match='enc_paddings shape'):
    rnnt.greedy_decode(np.zeros((2, 3, 4), np.float32), np.zeros((2, 4)), init_state(2),
                       pred_step, joint)
