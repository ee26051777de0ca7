"""LSTM building blocks: weight matrices of three kinds, the cell, a layer, and a stacked encoder.

A weight matrix is dense, sparse (dense kernel times a 0/1 mask held in the `masks` variable
collection, so pruning never touches `params`), or rank-r factorized (`x @ a @ b`). A compressed
matrix has a `budget`: the fraction of the dense matrix's FLOPs it may cost (the sparse density,
or the factorization rank r with 2r(m+n) <= budget * 2mn). `Matrix`
returns the weights as a small dict and `matmul` applies them, so the recurrence runs as a plain
`lax.scan` over arrays: no module call inside the loop.

Each layer's input projection does not depend on the recurrent state, so it is computed for the
whole sequence in one matrix product before the scan ("hoisting"); the scan only does the
recurrent product and the cell. The routed AmNet encoder (`amortized/`) reuses these pieces.

Layer math (asr/flops.py counts exactly this):
  gates = x @ W_x + b + y_prev @ W_h       (4H)
  i, f, g, o = split(gates)
  c = sigmoid(f) * c_prev + sigmoid(i) * tanh(g)
  h = sigmoid(o) * tanh(c)
  y = h @ W_p  if a projection is configured, else h    (y is both output and recurrent input)
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
KINDS = ('dense', 'sparse', 'factorized')


def factorized_rank(m: int, n: int, budget: float) -> int:
  """The largest rank whose product costs at most `budget` of the dense m x n FLOPs (>= 1)."""
  return max(1, min(m, n, int(budget * m * n / (m + n))))


class Matrix(nn.Module):
  """An `in_features x out_features` weight of a given kind; returns its weights as a dict."""
  in_features: int
  out_features: int
  kind: str = 'dense'
  budget: float = 1.0
  init_scale: float = 1.0

  @nn.compact
  def __call__(self) -> dict[str, Array]:
    m, n = self.in_features, self.out_features
    if self.kind not in KINDS:
      raise ValueError(f'matrix kind {self.kind!r} is not one of {KINDS}')
    if not 0 < self.budget <= 1:
      raise ValueError(f'matrix budget {self.budget} must be in (0, 1]')
    if self.kind == 'factorized':
      rank = factorized_rank(m, n, self.budget)
      # a @ b has the variance of a lecun-normal m x n kernel.
      init = nn.initializers.normal(self.init_scale * (1.0 / m) ** 0.5)
      a = self.param('a', init, (m, rank))
      b = self.param('b', nn.initializers.normal(rank ** -0.5), (rank, n))
      return {'a': a, 'b': b}
    kernel = self.param('kernel', nn.initializers.variance_scaling(
        self.init_scale, 'fan_in', 'truncated_normal'), (m, n))
    if self.kind == 'sparse':
      mask = self.variable('masks', 'kernel', lambda: jnp.ones((m, n), kernel.dtype))
      kernel = kernel * mask.value
    return {'kernel': kernel}


def matmul(weights: dict[str, Array], x: Array) -> Array:
  """Applies a `Matrix`'s weights to x [..., in_features]."""
  if 'kernel' in weights:
    return x @ weights['kernel']
  return (x @ weights['a']) @ weights['b']


def lstm_cell(gates: Array, c: Array) -> tuple[Array, Array]:
  """The LSTM nonlinearity: gates [..., 4H] and cell state c [..., H] -> (h, c)."""
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(c), c


def forget_bias_init(units: int, value: float = 1.0):
  """Bias init with the forget gate at `value`: the usual trick for early gradient flow."""
  def init(key, shape, dtype=jnp.float32):
    del key
    return jnp.zeros(shape, dtype).at[units:2 * units].set(value)
  return init


class LSTMLayer(nn.Module):
  """One unidirectional LSTM layer with optional output projection, over padded sequences."""
  input_dim: int
  units: int
  proj: int = 0
  kind: str = 'dense'
  budget: float = 1.0

  def setup(self):
    out_dim = self.proj or self.units
    self.wx = Matrix(self.input_dim, 4 * self.units, self.kind, self.budget)
    self.wh = Matrix(out_dim, 4 * self.units, self.kind, self.budget)
    self.bias = self.param('bias', forget_bias_init(self.units), (4 * self.units,))
    if self.proj:
      self.wp = Matrix(self.units, self.proj, self.kind, self.budget)

  def weights(self) -> dict[str, Any]:
    w = {'wx': self.wx(), 'wh': self.wh(), 'bias': self.bias}
    if self.proj:
      w['wp'] = self.wp()
    return w

  def __call__(self, x: Array, paddings: Array, state=None):
    """x [B, T, D], paddings [B, T] -> (y [B, T, P or H], final (y, c))."""
    w = self.weights()
    gx = matmul(w['wx'], x) + w['bias']                       # hoisted: one product for all T
    if state is None:
      state = zero_state(x.shape[0], self.units, self.proj, x.dtype)
    return run_lstm(w, gx, paddings, state)

  def step(self, state, x_t: Array):
    """One frame x_t [B, D] with state (y, c) -> new state; y is the output."""
    w = self.weights()
    return lstm_step(w, state, matmul(w['wx'], x_t) + w['bias'])


def zero_state(batch: int, units: int, proj: int = 0, dtype=jnp.float32):
  return (jnp.zeros((batch, proj or units), dtype), jnp.zeros((batch, units), dtype))


def lstm_step(w, state, gx_t):
  """One frame: state (y, c), precomputed input gates gx_t [B, 4H] -> new (y, c)."""
  y, c = state
  h, c = lstm_cell(gx_t + matmul(w['wh'], y), c)
  y = matmul(w['wp'], h) if 'wp' in w else h
  return y, c


def run_lstm(w, gx: Array, paddings: Array, state):
  """Scans `lstm_step` over time; padded frames keep the state and output zeros."""
  def step(state, inputs):
    gx_t, pad_t = inputs
    new = lstm_step(w, state, gx_t)
    keep = pad_t[:, None] > 0
    state = tuple(jnp.where(keep, old, nw) for old, nw in zip(state, new))
    return state, jnp.where(keep, 0.0, new[0])
  state, ys = jax.lax.scan(step, state, (jnp.swapaxes(gx, 0, 1), jnp.swapaxes(paddings, 0, 1)))
  return jnp.swapaxes(ys, 0, 1), state


class LSTMEncoder(nn.Module):
  """A stack of `LSTMLayer`s: the dense (or uniformly compressed) single encoder."""
  layers: int
  units: int
  proj: int = 0
  kind: str = 'dense'
  budget: float = 1.0

  @nn.compact
  def __call__(self, x: Array, paddings: Array, *, train: bool = False, step=None):
    del train, step   # same signature as the routed encoder, which uses them
    for i in range(self.layers):
      layer = LSTMLayer(x.shape[-1], self.units, self.proj, self.kind, self.budget,
                        name=f'layer_{i}')
      x, _ = layer(x, paddings)
    return x, paddings, {}
