"""asr.lstm against a plain numpy LSTM loop, for every matrix kind, with padding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from asr import lstm


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _numpy_lstm(w, x, pads, units, proj):
  dense = lambda m: (np.asarray(m['kernel']) if 'kernel' in m
                     else np.asarray(m['a']) @ np.asarray(m['b']))
  wx, wh, b = dense(w['wx']), dense(w['wh']), np.asarray(w['bias'])
  wp = dense(w['wp']) if proj else None
  batch, frames, _ = x.shape
  y = np.zeros((batch, proj or units)); c = np.zeros((batch, units))
  out = np.zeros((batch, frames, proj or units))
  for t in range(frames):
    gates = x[:, t] @ wx + b + y @ wh
    i, f, g, o = np.split(gates, 4, axis=-1)
    c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h = _sigmoid(o) * np.tanh(c_new)
    y_new = h @ wp if proj else h
    valid = pads[:, t:t + 1] == 0
    y, c = np.where(valid, y_new, y), np.where(valid, c_new, c)
    out[:, t] = np.where(valid, y_new, 0)
  return out


@pytest.mark.parametrize('kind, proj', [('dense', 0), ('dense', 6), ('factorized', 0),
                                        ('sparse', 6)])
def test_layer_matches_numpy(kind, proj):
  layer = lstm.LSTMLayer(5, 8, proj, kind, 0.5)
  x = np.random.default_rng(0).standard_normal((3, 7, 5)).astype(np.float32)
  pads = np.zeros((3, 7), np.float32)
  pads[1, 5:] = 1
  pads[2, :] = 1
  variables = layer.init(jax.random.key(0), x, pads)
  if kind == 'sparse':   # a random mask must change the result exactly like w * mask
    masks = jax.tree_util.tree_map(
        lambda m: (np.random.default_rng(1).random(m.shape) > 0.5).astype(np.float32),
        variables['masks'])
    variables = {**variables, 'masks': masks}
  y, _ = layer.apply(variables, x, pads)
  w = layer.apply(variables, method='weights')
  np.testing.assert_allclose(y, _numpy_lstm(w, x, pads, 8, proj), atol=1e-5)
  if kind == 'sparse':
    assert float(jnp.mean(w['wx']['kernel'] == 0)) > 0.3


def test_step_equals_sequence():
  layer = lstm.LSTMLayer(4, 6)
  x = np.random.default_rng(2).standard_normal((2, 5, 4)).astype(np.float32)
  pads = np.zeros((2, 5), np.float32)
  v = layer.init(jax.random.key(1), x, pads)
  y, _ = layer.apply(v, x, pads)
  state = lstm.zero_state(2, 6)
  for t in range(5):
    state = layer.apply(v, state, x[:, t], method='step')
    np.testing.assert_allclose(state[0], y[:, t], atol=1e-5)


def test_factorized_rank_respects_budget():
  for m, n, budget in [(240, 512, 0.25), (128, 512, 0.5), (10, 10, 0.01)]:
    r = lstm.factorized_rank(m, n, budget)
    assert r >= 1 and (r == 1 or 2 * r * (m + n) <= budget * 2 * m * n)
    assert 2 * (r + 1) * (m + n) > budget * 2 * m * n or r == min(m, n)
