"""Evaluation: loss and WER/CER of a model on a bucketed split, and transcription.

Decoding is frame-synchronous greedy by default (the streaming decoder), or beam search when
`cfg.eval.beam_width > 1`. Encoding and greedy decoding are jit-compiled per bucket shape; the
beam search's prediction and joint steps once per beam width, whatever the batch (every call has
`beam_width` rows): `traces` counts the compilations, for the tests.
Besides WER/CER, the result holds `emission_position` (asr/rnnt/alignment.py) of the first
batch: near 0 means the model emits every label at the first frames, an LM that ignores audio.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from asr import features
from asr import metrics as metrics_lib
from asr import rnnt
from asr import text_pieces
from asr import transcribe
from asr.data import batching
from asr.rnnt import alignment
from asr.rnnt import decode


class Evaluator:
  """Binds a model and config; `__call__(variables, dataset, stats) -> metrics dict`."""

  def __init__(self, model, cfg, progress: bool = False):
    self.model, self.cfg = model, cfg
    self.progress = progress        # a bar over the utterances on a terminal (asr.transcribe)
    self.tokenizer = text_pieces.from_config(cfg)
    self.traces = {'encode': 0, 'greedy': 0, 'pred_step': 0, 'joint_step': 0}
    self._encode = jax.jit(self._counted('encode', self._encode_impl))
    self._greedy = jax.jit(self._counted('greedy', self._greedy_impl))
    self._position = jax.jit(self._position_impl)
    # The beam search's steps take the variables as an argument, so one compilation per shape
    # serves every batch and every checkpoint.
    self._pred_step = jax.jit(self._counted('pred_step', functools.partial(
        self.model.apply, method='pred_step')))
    self._joint_step = jax.jit(self._counted('joint_step', functools.partial(
        self.model.apply, method='joint_step')))

  def _counted(self, name, fn):
    def traced(*args):
      self.traces[name] += 1          # runs at trace time only: once per compilation
      return fn(*args)
    return traced

  def _position_impl(self, variables, stats, batch):
    """Mean emission position of the reference labels under the model (asr.rnnt.alignment)."""
    feats, pads = features.featurize_batch(batch, self.cfg.frontend, stats)
    out = self.model.apply(variables, feats, pads, batch['labels'], batch['label_paddings'])
    blank, label = out['lattice']
    occupancy = alignment.label_occupancy(blank, label, out['enc_paddings'],
                                          batch['label_paddings'])
    position = alignment.emission_position(occupancy, out['enc_paddings'],
                                           batch['label_paddings'])
    weights = batch['weights'] * (batch['label_paddings'] < 0.5).any(1)
    return (position * weights).sum() / jnp.maximum(weights.sum(), 1.0)

  def _encode_impl(self, variables, stats, inputs):
    feats, pads = features.featurize_batch(inputs, self.cfg.frontend, stats)
    return self.model.apply(variables, feats, pads, method='encode')

  def _greedy_impl(self, variables, enc, enc_pads):
    init = self.model.apply(variables, enc.shape[0], method='initial_pred_state')
    pred_step = functools.partial(self.model.apply, variables, method='pred_step')
    joint = functools.partial(self.model.apply, variables, method='joint_step')
    return decode.greedy_decode(enc, enc_pads, init, pred_step, joint,
                                max_symbols_per_frame=self.cfg.eval.max_symbols_per_frame,
                                return_frames=True)

  def decode_batch(self, variables, stats, batch):
    """([(label ids, emission frame of each), ...] of every row of a padded batch, the
    encoder's aux outputs (e.g. routing, backlog), the encoder paddings [B, T])."""
    inputs = {k: v for k, v in batch.items() if k.startswith(('audio', 'log_mel'))}
    enc, enc_pads, aux = self._encode(variables, stats, inputs)
    beam = self.cfg.eval.beam_width
    if beam > 1:
      pred_step = functools.partial(self._pred_step, variables)
      joint = functools.partial(self._joint_step, variables)
      init = self.model.apply(variables, enc.shape[0], method='initial_pred_state')
      results = decode.beam_search_batch(
          enc, enc_pads, init, pred_step, joint, beam_width=beam,
          max_symbols_per_frame=self.cfg.eval.max_symbols_per_frame, return_frames=True)
      return [(tokens, frames) for tokens, _, frames in results], aux, enc_pads
    tokens, token_pads, frames = jax.device_get(self._greedy(variables, enc, enc_pads))
    rows = [(list(t[p == 0]), list(f[p == 0])) for t, p, f in zip(tokens, token_pads, frames)]
    return rows, aux, enc_pads

  def transcribe_batch(self, variables, stats, batch):
    """Texts of a padded batch (all rows), the encoder's aux outputs (e.g. routing, backlog)
    and the encoder paddings [B, T]."""
    rows, aux, enc_pads = self.decode_batch(variables, stats, batch)
    return [self.tokenizer.decode(tokens) for tokens, _ in rows], aux, enc_pads

  def __call__(self, variables, dataset, stats, limit=None, return_rows=False):
    """Corpus WER/CER; with return_rows, also one dict per utterance: id, ref, hyp, and the
    encoder's aux outputs for its valid frames (e.g. an AmNet's per-frame routing)."""
    limit = limit if limit is not None else self.cfg.eval.max_utterances
    error_rate = metrics_lib.ErrorRate()
    rows, position = [], None
    bar = transcribe.progress(total=min(limit or len(dataset), len(dataset)), desc='eval',
                              enabled=self.progress, unit='utt')
    for batch, indices in dataset.eval_batches(self.cfg.eval.batch_size, limit=limit or None):
      bar.update(len(indices))
      if position is None:     # one batch is enough to see where emissions sit
        position = float(self._position(variables, stats, batch))
      texts, aux, enc_pads = self.transcribe_batch(variables, stats, batch)
      if return_rows:
        aux, enc_pads = jax.device_get((aux, enc_pads))
      for row, (i, hyp) in enumerate(zip(indices, texts)):
        ref = dataset.transcripts[i]
        error_rate.update(ref, hyp)
        if return_rows:
          rows.append({'id': dataset.ids[i], 'ref': ref, 'hyp': hyp,
                       'seconds': int(dataset.num_samples[i]) / batching.SAMPLE_RATE,
                       **_row_aux(aux, row, enc_pads[row])})
    bar.close()
    result = {k: float(v) for k, v in error_rate.result().items()}
    if position is not None:
      result['emission_position'] = position
    return (result, rows) if return_rows else result


def _row_aux(aux, row: int, enc_paddings_row):
  """One utterance's slices of the encoder's aux outputs: [B, T, ...] -> its valid frames,
  [B] -> a float; batch-level scalars are left out."""
  valid = np.asarray(enc_paddings_row) == 0
  out = {}
  for key, value in aux.items():
    value = np.asarray(value)
    if value.ndim >= 2 and value.shape[1] == valid.size:
      out[key] = value[row][valid]
    elif value.ndim == 1:
      out[key] = float(value[row])
  return out
