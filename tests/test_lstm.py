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


@pytest.fixture(autouse=True)
def float32_products():
  """float32 matrix products in every test here: on a GPU the default (TF32) differs from the
  float64 numpy and CPU references by 1e-4 to 5e-4, which says nothing about the code."""
  with jax.default_matmul_precision('float32'):
    yield


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


def _reference_cudnn_lstm(x, h0, c0, weights, lengths, *, input_size, hidden_size, num_layers,
                          dropout, bidirectional):
  """`jax.experimental.rnn.lstm`'s signature over its CPU reference (cuDNN's own semantics)."""
  from jax.experimental import rnn
  w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, input_size, hidden_size,
                                                   num_layers, bidirectional)
  return rnn.lstm_ref(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, input_size, hidden_size,
                      num_layers, dropout, bidirectional)


@pytest.mark.parametrize('path', ['fused', 'cudnn', 'cudnn_gpu'])
def test_stack_paths_match_autodiff_scans(path):
  """The fused recurrence (hand-written backward) and the cuDNN packing (gate order, biases,
  padding) give the outputs and gradients of autodiff through the masked per-layer scans.

  `cudnn` checks the packing on any backend with JAX's reference implementation; `cudnn_gpu`
  runs the real cuDNN kernel (`JAX_PLATFORMS=cuda pytest tests/test_lstm.py` on a GPU machine).
  """
  if path == 'cudnn_gpu' and jax.default_backend() != 'gpu':
    pytest.skip('needs a GPU (JAX_PLATFORMS=cuda)')
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 11, 5))
  paddings = (np.arange(11)[None] >= np.array([11, 7, 3, 0])[:, None]).astype(np.float32)
  stack = lstm.LSTMStack(input_dim=5, layers=3, units=8)
  params = stack.init(jax.random.PRNGKey(1))['params']
  # non-zero biases in every gate, so a bias packed into the wrong slot shows
  params = jax.tree_util.tree_map_with_path(
      lambda p, v: v + 0.3 * jax.random.normal(jax.random.PRNGKey(len(str(p))), v.shape)
      if 'bias' in str(p) else v, params)
  params['layer_1']['wh']['kernel'] *= np.random.default_rng(0).random((8, 32)) > 0.5  # sparse

  def weights(p):
    return [{'wx': {'kernel': p[f'layer_{i}']['wx']['kernel']},
             'wh': {'kernel': p[f'layer_{i}']['wh']['kernel']},
             'bias': p[f'layer_{i}']['bias']} for i in range(3)]

  def run(p, which):
    if which == 'reference':
      return lstm.run_masked_scans(weights(p), x, paddings)
    if which == 'fused':
      return lstm.run_stack(weights(p), x, paddings, 'scan')
    return lstm.run_cudnn_stack(weights(p), x, paddings,
                                lstm_fn=_reference_cudnn_lstm if which == 'cudnn' else None)

  y_ref, y = run(params, 'reference'), run(params, path)
  np.testing.assert_allclose(y, y_ref, atol=1e-5)
  assert np.all(np.asarray(y)[paddings > 0] == 0)
  if path == 'fused':
    y_module = lstm.run_stack(stack.apply({'params': params}), x, paddings, 'scan')
    np.testing.assert_allclose(y_module, y, atol=1e-6)
  loss = lambda which: lambda p: jnp.sum(jnp.sin(3 * run(p, which)))
  g_ref, g = jax.jit(jax.grad(loss('reference')))(params), jax.jit(jax.grad(loss(path)))(params)
  for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_lstm_impl_choice():
  dense = [{'wx': {'kernel': jnp.ones((4, 8))}, 'wh': {'kernel': jnp.ones((2, 8))},
            'bias': jnp.zeros(8)}]
  factorized = [{'wx': {'a': jnp.ones((4, 1)), 'b': jnp.ones((1, 8))},
                 'wh': {'kernel': jnp.ones((2, 8))}, 'bias': jnp.zeros(8)}]
  assert lstm.cudnn_applies(dense) and not lstm.cudnn_applies(factorized)
  assert not lstm.use_cudnn('scan', dense)
  assert not lstm.use_cudnn('auto', dense)     # the scans: faster than cuDNN on an H100
  assert not lstm.use_cudnn('auto', factorized)
  with pytest.raises(ValueError, match='lstm_impl'):
    lstm.use_cudnn('fast', dense)
  if jax.default_backend() != 'gpu':
    with pytest.raises(ValueError, match='needs a GPU'):
      lstm.use_cudnn('cudnn', dense)
