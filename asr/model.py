"""The RNN-T model: any encoder, a prediction network, an additive joint; a CTC head optional.

Parameters: `{'encoder': ..., 'predictor': ..., 'joint': ...}` (+ `'ctc_head'`). The encoder is
a module passed in (the dense `asr.lstm.LSTMEncoder`, or an AmNet encoder from `amortized/`) with
the call signature `encoder(x, paddings, train=, step=) -> (out, out_paddings, aux)`; `aux` may
hold `'loss'`, an auxiliary loss the train step adds, and scalar metrics to log.

The joint is additive: `logits = W_out tanh(W_enc enc_t + W_pred pred_u)`. `encode` returns the
encoder output already projected by `W_enc`, so decoding does the cheap half per symbol only.

`__call__` returns the RNN-T lattice (`asr.rnnt.loss` conventions) rather than the logits: with
`prune_range` = 0 the joint runs at every cell; with S > 0 it runs on a band of S positions per
frame chosen by a simple additive joint (`asr.rnnt.pruned`; the parameters `simple_enc` and
`simple_pred` exist only then, are trained by their own loss and are unused at inference).
`ctc_upsample` = r gives the CTC head r outputs per encoder frame, so CTC keeps one output per
30 ms when the encoder runs at 60 ms (CTC needs at least one output per label and repeat).
"""
import flax.linen as nn
import jax.numpy as jnp

from asr import lstm
from asr.rnnt import loss as loss_lib
from asr.rnnt import pruned


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
  ctc_upsample: int = 1
  prune_range: int = 0
  blank_id: int = 0

  def setup(self):
    self.predictor = Predictor(self.vocab_size, self.pred_embed_dim, self.pred_units)
    self.joint = Joint(self.joint_dim, self.vocab_size)
    if self.ctc_head:
      self.ctc = nn.Dense(self.vocab_size * self.ctc_upsample, name='ctc_head')
    if self.prune_range:
      self.simple_enc = nn.Dense(self.vocab_size, name='simple_enc')
      self.simple_pred = nn.Dense(self.vocab_size, use_bias=False, name='simple_pred')

  def __call__(self, feats, feat_paddings, labels, label_paddings, *, train=False, step=None):
    """Returns dict(lattice = (blank_logp [B, T, U+1], label_logp [B, T, U]), enc_paddings, aux
    [, simple_lattice][, ctc_logits [B, T*r, V], ctc_paddings])."""
    enc, enc_pads, aux = self.encoder(feats, feat_paddings, train=train, step=step)
    pred = self.predictor(labels, label_paddings, self.blank_id)
    labels = jnp.where(label_paddings > 0.5, self.blank_id, labels).astype(jnp.int32)
    enc_projected = self.joint.enc_proj(enc)
    out = {'enc_paddings': enc_pads, 'aux': aux}
    if self.prune_range:
      simple = pruned.simple_lattice(self.simple_enc(enc), self.simple_pred(pred), labels,
                                     self.blank_id)
      begin = pruned.band_begin(*simple, enc_pads, label_paddings, self.prune_range)
      band_pred = pruned.band_gather(pred, begin, self.prune_range)      # [B, T, S, H]
      logits = self.joint(enc_projected[:, :, None, :], band_pred)
      out['lattice'] = pruned.band_lattice(logits, labels, begin, pred.shape[1], self.blank_id)
      out['simple_lattice'] = simple
    else:
      logits = self.joint(enc_projected[:, :, None, :], pred[:, None, :, :])
      out['lattice'] = loss_lib.gather_logprobs(logits, labels, self.blank_id)
    if self.ctc_head:
      batch, frames, _ = enc.shape
      out['ctc_logits'] = self.ctc(enc).reshape(batch, frames * self.ctc_upsample, -1)
      out['ctc_paddings'] = jnp.repeat(enc_pads, self.ctc_upsample, axis=1)
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
