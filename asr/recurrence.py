"""The dense LSTM recurrence with a hand-written backward pass (the fast path off cuDNN).

Autodiff of a `lax.scan` accumulates the gradient of the closed-over recurrent kernel inside
the reverse loop: one extra [H, B] x [B, 4H] product and a read-modify-write of the whole
[H, 4H] accumulator per frame. Here the reverse scan only carries (dh, dc) and emits the gate
gradients; the kernel's gradient is then one [H, T*B] x [T*B, 4H] product after the loop, as
cuDNN and PyTorch do it. With the input projection hoisted (asr/lstm.py) this is what brings a
CPU train step close to PyTorch's (README "Performance"; tests/test_lstm.py checks values and
gradients against autodiff of the plain scan).

All four gates use one tanh: sigmoid(x) = tanh(x / 2) / 2 + 1/2.
"""
import jax
import jax.numpy as jnp
import numpy as np


def _gate_affine(units: int, dtype):
  """(a, b) with act = tanh(a * gates) * a + b: sigmoid for i, f, o and tanh for g."""
  half, one = np.full(units, 0.5), np.ones(units)
  a = np.concatenate([half, half, one, half])
  b = np.concatenate([half, half, np.zeros(units), half])
  return jnp.asarray(a, dtype), jnp.asarray(b, dtype)


def gate_activations(gates):
  """gates [..., 4H] (i, f, g, o pre-activations) -> activations in one tanh."""
  a, b = _gate_affine(gates.shape[-1] // 4, gates.dtype)
  return jnp.tanh(gates * a) * a + b


@jax.custom_vjp
def recurrence(kernel, gx):
  """Time-major gx [T, B, 4H] (input projection + bias), kernel [H, 4H], zero initial state
  -> outputs h [T, B, H]. Every frame is computed: mask padded frames (a suffix) afterwards."""
  return _forward(kernel, gx)[0]


def _forward(kernel, gx):
  units = kernel.shape[0]

  def step(carry, gx_t):
    h, c = carry
    acts = gate_activations(gx_t + h @ kernel)
    i, f, g, o = jnp.split(acts, 4, axis=-1)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), (h, c, acts)

  zeros = jnp.zeros((gx.shape[1], units), gx.dtype)
  _, (hs, cs, acts) = jax.lax.scan(step, (zeros, zeros), gx)
  return hs, (kernel, hs, cs, acts)


def _backward(residuals, dhs):
  kernel, hs, cs, acts = residuals
  kernel_t = kernel.T
  shift = lambda a: jnp.concatenate([jnp.zeros_like(a[:1]), a[:-1]], 0)   # value at t - 1

  def step(carry, inputs):
    dh, dc = carry
    dh_t, c_t, c_prev, acts_t = inputs
    i, f, g, o = jnp.split(acts_t, 4, axis=-1)
    tc = jnp.tanh(c_t)
    dh = dh + dh_t
    dc = dc + dh * o * (1 - tc * tc)
    dgates = jnp.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                              dc * i * (1 - g * g), dh * tc * o * (1 - o)], -1)
    return (dgates @ kernel_t, dc * f), dgates

  zeros = jnp.zeros_like(hs[0])
  _, dgates = jax.lax.scan(step, (zeros, zeros), (dhs, cs, shift(cs), acts), reverse=True)
  t, b, units = hs.shape
  dkernel = shift(hs).reshape(t * b, units).T @ dgates.reshape(t * b, 4 * units)
  return dkernel, dgates


recurrence.defvjp(_forward, _backward)
