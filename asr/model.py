"""The RNN-T model: any encoder, a prediction network, an additive joint; a CTC head optional.

Parameters: `{'encoder': ..., 'predictor': ..., 'joint': ...}` (+ `'ctc_head'`). The encoder is
a module passed in (the dense `asr.lstm.LSTMEncoder`, or an AmNet encoder from `amortized/`) with
the call signature `encoder(x, paddings, train=, step=) -> (out, out_paddings, aux)`; `aux` may
hold `'loss'`, an auxiliary loss the train step adds, and scalar metrics to log.

The joint is additive: `logits = W_out tanh(W_enc enc_t + W_pred pred_u)`. `encode` returns the
encoder output already projected by `W_enc`, so decoding does the cheap half per symbol only.
"""
import flax.linen as nn
import jax.numpy as jnp

from asr import lstm


class Predictor(nn.Module):
  """Embedding of the previous label (blank = start symbol) and one LSTM layer."""
  vocab_size: int
  embed_dim: int
  units: int

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.lstm = lstm.LSTMLayer(self.embed_dim, self.units, name='lstm')

  def __call__(self, labels, label_paddings, blank_id: int = 0):
    """labels [B, U] -> outputs [B, U+1, H] for the label prefixes of length 0..U."""
    prev = jnp.pad(labels, ((0, 0), (1, 0)), constant_values=blank_id)
    pads = jnp.pad(label_paddings, ((0, 0), (1, 0)))
    out, _ = self.lstm(self.embed(prev), pads)
    return out

  def step(self, state, label):
    """One label [B] with state (y, c) -> (out [B, H], new state): for decoding."""
    state = self.lstm.step(state, self.embed(label))
    return state[0], state

  def initial_state(self, batch: int):
    return lstm.zero_state(batch, self.units)


class Joint(nn.Module):
  dim: int
  vocab_size: int

  def setup(self):
    self.enc_proj = nn.Dense(self.dim, name='enc_proj')
    self.pred_proj = nn.Dense(self.dim, use_bias=False, name='pred_proj')
    self.out = nn.Dense(self.vocab_size, name='out')

  def __call__(self, enc_projected, pred):
    """Broadcasting: enc_projected [..., J] + pred_proj(pred) [..., J] -> logits [..., V]."""
    return self.out(jnp.tanh(enc_projected + self.pred_proj(pred)))


class RNNT(nn.Module):
  encoder: nn.Module
  vocab_size: int
  pred_embed_dim: int = 64
  pred_units: int = 128
  joint_dim: int = 128
  ctc_head: bool = False
  blank_id: int = 0

  def setup(self):
    self.predictor = Predictor(self.vocab_size, self.pred_embed_dim, self.pred_units)
    self.joint = Joint(self.joint_dim, self.vocab_size)
    if self.ctc_head:
      self.ctc = nn.Dense(self.vocab_size, name='ctc_head')

  def __call__(self, feats, feat_paddings, labels, label_paddings, *, train=False, step=None):
    """Returns dict(logits [B, T, U+1, V], enc_paddings, aux[, ctc_logits])."""
    enc, enc_pads, aux = self.encoder(feats, feat_paddings, train=train, step=step)
    pred = self.predictor(labels, label_paddings, self.blank_id)
    logits = self.joint(self.joint.enc_proj(enc)[:, :, None, :], pred[:, None, :, :])
    out = {'logits': logits, 'enc_paddings': enc_pads, 'aux': aux}
    if self.ctc_head:
      out['ctc_logits'] = self.ctc(enc)
    return out

  def encode(self, feats, feat_paddings, *, step=None):
    """Encoder output projected for the joint: ([B, T, J], paddings, aux)."""
    enc, enc_pads, aux = self.encoder(feats, feat_paddings, train=False, step=step)
    return self.joint.enc_proj(enc), enc_pads, aux

  def pred_step(self, state, label):
    return self.predictor.step(state, label)

  def joint_step(self, enc_projected, pred_out):
    return self.joint(enc_projected, pred_out)

  def initial_pred_state(self, batch: int):
    return self.predictor.initial_state(batch)
