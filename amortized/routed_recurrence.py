"""One routed AmNet layer's recurrence with a hand-written backward pass.

Every frame, every branch k computes its LSTM step from the shared state (h, c); the new state
is the route-weighted sum (h, c) = sum_k r_k (h_k, c_k), with r the straight-through one-hot
route [T, B, K]. As in `asr/recurrence.py`, the reverse scan carries only (dh, dc) and emits
each branch's gate gradients and the route's gradient; the recurrent weights' gradients are
products over the whole sequence after the loop, for dense kernels and for factorized (a, b)
pairs alike. tests/test_amnet.py checks values and gradients against autodiff of the scan.

Frames are all computed (padding is a suffix; callers zero padded outputs), which leaves the
valid outputs and every gradient as with state-freezing at padded frames.
"""
import jax
import jax.numpy as jnp

from asr import recurrence


def _recur(w, h):
  return h @ w['kernel'] if 'kernel' in w else (h @ w['a']) @ w['b']


def _recur_transpose(w, d):
  return d @ w['kernel'].T if 'kernel' in w else (d @ w['b'].T) @ w['a'].T


@jax.custom_vjp
def routed_recurrence(recurrent, gx, route):
  """recurrent: K weight dicts ({'kernel'} or {'a', 'b'}) [H, 4H]; gx [T, B, K, 4H] time-major
  (input projections + biases); route [T, B, K] -> outputs h [T, B, H] from zero state."""
  return _forward(recurrent, gx, route)[0]


def _forward(recurrent, gx, route):
  units = gx.shape[-1] // 4

  def step(carry, inputs):
    h, c = carry
    gx_t, r_t = inputs
    acts = jnp.stack([recurrence.gate_activations(gx_t[:, k] + _recur(w, h))
                      for k, w in enumerate(recurrent)], 1)              # [B, K, 4H]
    i, f, g, o = jnp.split(acts, 4, axis=-1)
    c_k = f * c[:, None] + i * g                                         # [B, K, H]
    h_k = o * jnp.tanh(c_k)
    r = r_t[..., None]
    h_new, c_new = (r * h_k).sum(1), (r * c_k).sum(1)
    return (h_new, c_new), (h_new, c_new, acts, c_k)

  zeros = jnp.zeros((gx.shape[1], units), gx.dtype)
  _, (hs, cs, acts, c_ks) = jax.lax.scan(step, (zeros, zeros), (gx, route))
  return hs, (recurrent, route, hs, cs, acts, c_ks)


def _backward(residuals, dhs):
  recurrent, route, hs, cs, acts, c_ks = residuals
  shift = lambda a: jnp.concatenate([jnp.zeros_like(a[:1]), a[:-1]], 0)   # value at t - 1

  def step(carry, inputs):
    dh, dc = carry
    dh_t, r_t, c_prev, acts_t, c_k = inputs
    i, f, g, o = jnp.split(acts_t, 4, axis=-1)                            # [B, K, H] each
    tc = jnp.tanh(c_k)
    dh = dh + dh_t
    d_route = (dh[:, None] * o * tc).sum(-1) + (dc[:, None] * c_k).sum(-1)   # [B, K]
    r = r_t[..., None]
    dh_k = r * dh[:, None]
    dc_k = r * dc[:, None] + dh_k * o * (1 - tc * tc)
    dgates = jnp.concatenate([dc_k * g * i * (1 - i), dc_k * c_prev[:, None] * f * (1 - f),
                              dc_k * i * (1 - g * g), dh_k * tc * o * (1 - o)], -1)
    dh_prev = sum(_recur_transpose(w, dgates[:, k]) for k, w in enumerate(recurrent))
    return (dh_prev, (dc_k * f).sum(1)), (dgates, d_route)

  zeros = jnp.zeros_like(hs[0])
  _, (dgates, d_route) = jax.lax.scan(
      step, (zeros, zeros), (dhs, route, shift(cs), acts, c_ks), reverse=True)
  t, b, units = hs.shape
  h_prev = shift(hs).reshape(t * b, units)
  d_recurrent = []
  for k, w in enumerate(recurrent):
    dg = dgates[:, :, k].reshape(t * b, 4 * units)
    if 'kernel' in w:
      d_recurrent.append({'kernel': h_prev.T @ dg})
    else:
      d_recurrent.append({'a': h_prev.T @ (dg @ w['b'].T), 'b': (h_prev @ w['a']).T @ dg})
  return type(recurrent)(d_recurrent), dgates, d_route


routed_recurrence.defvjp(_forward, _backward)
