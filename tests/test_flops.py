"""Tests for asr/flops.py against XLA's cost analysis of the compiled computation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from asr import flops


def _xla_flops(fn, *args):
  """XLA's count for the compiled fn: flops plus transcendentals (which it counts apart)."""
  analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):     # older jax: one dict per device program
    analysis = analysis[0]
  return analysis['flops'] + analysis.get('transcendentals', 0.0)


def _lstm_step(x, h, c, w_x, w_h, b, w_p=None):
  gates = x @ w_x + h @ w_h + b
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
  y = h_new if w_p is None else h_new @ w_p
  return y, c_new


def _params(rng, *shapes):
  return [jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes]


@pytest.mark.parametrize('proj', [None, 32])
def test_dense_lstm_step_matches_xla(proj):
  rng = np.random.default_rng(0)
  inp, units = 48, 64
  rec = proj or units
  x, h, c, w_x, w_h, b = _params(rng, (1, inp), (1, rec), (1, units), (inp, 4 * units),
                                 (rec, 4 * units), (4 * units,))
  args = [x, h, c, w_x, w_h, b] + ([] if proj is None else _params(rng, (units, proj)))
  xla = _xla_flops(_lstm_step, *args)
  ours = flops.lstm_layer_flops(inp, units, proj)
  assert abs(ours - xla) / xla < 0.10, (ours, xla)


def test_factorized_lstm_step_matches_xla():
  rng = np.random.default_rng(1)
  inp, units, rank = 48, 64, 8
  x, h, c, u_x, v_x, u_h, v_h, b = _params(
      rng, (1, inp), (1, units), (1, units), (inp, rank), (rank, 4 * units),
      (units, rank), (rank, 4 * units), (4 * units,))

  def step(x, h, c, u_x, v_x, u_h, v_h, b):
    gates = (x @ u_x) @ v_x + (h @ u_h) @ v_h + b
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c_new), c_new

  xla = _xla_flops(step, x, h, c, u_x, v_x, u_h, v_h, b)
  ours = flops.lstm_layer_flops(inp, units, kinds={'input': 'factorized',
                                                   'recurrent': 'factorized'},
                                ranks={'input': rank, 'recurrent': rank})
  assert abs(ours - xla) / xla < 0.10, (ours, xla)
  # And the factorization really is cheaper than the dense layer here.
  assert ours < flops.lstm_layer_flops(inp, units)


@pytest.mark.parametrize('activation', [None, 'relu', 'tanh'])
def test_dense_layer_matches_xla(activation):
  rng = np.random.default_rng(2)
  x, w, b = _params(rng, (1, 96), (96, 40), (40,))
  act = {None: lambda v: v, 'relu': jax.nn.relu, 'tanh': jnp.tanh}[activation]
  xla = _xla_flops(lambda x, w, b: act(x @ w + b), x, w, b)
  ours = flops.dense_flops(96, 40, activation=activation)
  assert abs(ours - xla) / xla < 0.10, (ours, xla)


def test_mlp_matches_xla():
  rng = np.random.default_rng(3)
  dims = [240, 64, 32, 2]
  x = _params(rng, (1, dims[0]))[0]
  layers = [_params(rng, (m, n), (n,)) for m, n in zip(dims[:-1], dims[1:])]

  def mlp(x, layers):
    for k, (w, b) in enumerate(layers):
      x = x @ w + b
      if k < len(layers) - 1:
        x = jax.nn.relu(x)
    return x

  xla = _xla_flops(mlp, x, layers)
  ours = flops.mlp_flops(dims, activation='relu')
  assert abs(ours - xla) / xla < 0.10, (ours, xla)


def test_sparse_formula_counts_the_nonzeros():
  rng = np.random.default_rng(4)
  inp, units = 20, 16
  w_x = rng.normal(size=(inp, 4 * units)) * (rng.uniform(size=(inp, 4 * units)) < 0.3)
  w_h = rng.normal(size=(units, 4 * units)) * (rng.uniform(size=(units, 4 * units)) < 0.5)
  nnz = flops.count_nnz({'w_x': w_x, 'w_h': w_h})
  assert nnz == {'w_x': int((w_x != 0).sum()), 'w_h': int((w_h != 0).sum())}
  sparse = flops.lstm_layer_flops(inp, units, kinds={'input': 'sparse', 'recurrent': 'sparse'},
                                  nnz={'input': nnz['w_x'], 'recurrent': nnz['w_h']})
  dense = flops.lstm_layer_flops(inp, units)
  # Only the matmul part changes, by 2 FLOPs per pruned weight.
  pruned = w_x.size + w_h.size - nnz['w_x'] - nnz['w_h']
  assert dense - sparse == 2 * pruned
  # Brute force: a multiply-add for every nonzero weight in x @ W.
  assert flops.matmul_flops(inp, 4 * units, 'sparse', nnz=nnz['w_x']) == 2 * sum(
      1 for i in range(inp) for j in range(4 * units) if w_x[i, j] != 0)


def test_count_nnz_with_masks():
  params = {'a': np.ones((3, 4)), 'b': {'c': np.array([0.0, 2.0, 3.0])}}
  masks = {'a': (np.arange(12).reshape(3, 4) % 3 == 0).astype(np.float32), 'b': {'c': None}}
  assert flops.count_nnz(params, masks) == {'a': 4, 'b': {'c': 2}}


def test_encoder_frame_flops_sums_layers_from_specs_and_dicts():
  specs = [flops.LstmSpec(240, 64, proj=32),
           {'type': 'lstm', 'input_dim': 32, 'units': 64, 'kinds': {'input': 'factorized'},
            'ranks': {'input': 4}},
           {'type': 'dense', 'input_dim': 64, 'output_dim': 10},
           flops.MlpSpec([241, 16, 2], activation='tanh')]
  expected = (flops.lstm_layer_flops(240, 64, 32)
              + flops.lstm_layer_flops(32, 64, kinds={'input': 'factorized'},
                                       ranks={'input': 4})
              + flops.dense_flops(64, 10) + flops.mlp_flops([241, 16, 2], 'tanh'))
  assert flops.encoder_frame_flops(specs) == expected
  # Hand count of the matmul part of the first layer: 2*240*256 + 2*32*256 + 2*64*32.
  assert flops.lstm_layer_flops(240, 64, 32) - (2 * 240 * 256 + 2 * 32 * 256 + 2 * 64 * 32) == (
      2 * 256 + 64 * (4 * flops.TRANSCENDENTAL_FLOPS + 4))


@pytest.mark.parametrize('call, match', [
    (lambda: flops.matmul_flops(4, 4, 'sparse'), 'nnz'),
    (lambda: flops.matmul_flops(4, 4, 'factorized', rank=0), 'rank'),
    (lambda: flops.matmul_flops(4, 4, 'lowrank'), 'kind'),
    (lambda: flops.encoder_frame_flops([{'type': 'gru'}]), 'type'),
    (lambda: flops.lstm_layer_flops(4, 4, kinds={'output': 'dense'}), 'unknown'),
    (lambda: flops.dense_flops(4, 4, activation='gelu'), 'activation'),
])
def test_bad_specs_raise(call, match):
  with pytest.raises(flops.FlopsSpecError, match=match):
    call()
