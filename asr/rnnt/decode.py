"""RNN-T decoding: frame-synchronous greedy search (jit-able, streamable) and beam search.

Both are written against two callables the model provides (pure JAX functions):

  pred_step(pred_state, label_id [B] int32) -> (pred_out [B, P], new_pred_state)
      the prediction network fed one previous label (start symbol = blank); state is a pytree
      whose leaves have a leading batch dimension;
  joint(enc_frame [B, D], pred_out [B, P]) -> logits [B, V].

Greedy (`greedy_decode`, or `greedy_init` + `greedy_step` one frame at a time): at each frame
emit the argmax label until the argmax is blank or `max_symbols_per_frame` labels were emitted,
then move to the next frame (after the last allowed label without a blank, the usual cap). The
prediction state advances only on a non-blank emission. Padded frames emit nothing.

Beam search (`beam_search`): the same frame-synchronous search with a beam, numpy on the host
around the jitted callables. Hypotheses with identical label sequences that leave a frame are
merged by log-adding their scores; a hypothesis's score is the log-probability of its label
sequence summed over the alignments kept in the beam, under the same symbol cap. With
beam_width=1 it makes greedy's choices.
"""
import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PredStep = Callable[[Any, Array], tuple[Array, Any]]
Joint = Callable[[Array, Array], Array]


class DecodeError(ValueError):
  """Decoder inputs that do not fit together."""


class GreedyState(NamedTuple):
  """What greedy decoding carries from frame to frame.

  pred_state: the prediction network's state after the last emitted label.
  pred_out: [B, P] its output for that label (cached: the joint needs it at every frame).
  """
  pred_state: Any
  pred_out: Array


def _batch_size(tree) -> int:
  leaves = jax.tree_util.tree_leaves(tree)
  if not leaves:
    raise DecodeError('init_pred_state has no array leaves to read the batch size from')
  return leaves[0].shape[0]


def _select(mask: Array, new, old):
  """Leaf-wise where(mask, new, old), mask [B] broadcast over trailing dims."""
  def pick(n, o):
    return jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o)
  return jax.tree_util.tree_map(pick, new, old)


def greedy_init(init_pred_state, pred_step: PredStep, blank_id: int = 0) -> GreedyState:
  """The carry before the first frame: the prediction network fed the start symbol."""
  batch = _batch_size(init_pred_state)
  pred_out, pred_state = pred_step(init_pred_state, jnp.full((batch,), blank_id, jnp.int32))
  return GreedyState(pred_state, pred_out)


def greedy_step(carry: GreedyState, enc_frame: Array, pad: Array, *, pred_step: PredStep,
                joint: Joint, max_symbols_per_frame: int = 3,
                blank_id: int = 0) -> tuple[GreedyState, Array, Array]:
  """Greedy decoding of one frame, for streaming or as the body of `greedy_decode`.

  Args:
    carry: state after the previous frame (`greedy_init` before the first).
    enc_frame: [B, D] encoder output for this frame.
    pad: [B], 1.0 where this frame is padding (nothing is emitted, the carry is unchanged).
  Returns:
    (new carry, tokens [B, S], token_paddings [B, S]) with S = max_symbols_per_frame; emitted
    labels come first in each row, token_paddings is 1.0 after them (tokens there = blank_id).
  """
  batch = enc_frame.shape[0]
  symbols = max_symbols_per_frame
  if symbols < 1:
    raise DecodeError(f'max_symbols_per_frame must be >= 1, got {symbols}')

  def cond(loop):
    step, active, _, _ = loop
    return (step < symbols) & jnp.any(active)

  def body(loop):
    step, active, state, tokens = loop
    best = jnp.argmax(joint(enc_frame, state.pred_out), axis=-1).astype(jnp.int32)
    emit = active & (best != blank_id)
    tokens = tokens.at[:, step].set(jnp.where(emit, best, blank_id))

    def advance(state):
      pred_out, pred_state = pred_step(state.pred_state, best)
      return _select(emit, GreedyState(pred_state, pred_out), state)

    # Most frames end with a blank at the first try: skip the prediction network then.
    state = jax.lax.cond(jnp.any(emit), advance, lambda s: s, state)
    return step + 1, emit, state, tokens

  tokens0 = jnp.full((batch, symbols), blank_id, jnp.int32)
  active0 = pad < 0.5
  _, _, carry, tokens = jax.lax.while_loop(cond, body, (0, active0, carry, tokens0))
  token_paddings = (tokens == blank_id).astype(jnp.float32)
  return carry, tokens, token_paddings


def compact(tokens: Array, token_paddings: Array, blank_id: int = 0,
            frames: Array | None = None):
  """Moves the unpadded tokens of each row to the front, keeping their order; with `frames`
  (the same shape), moves them alike and returns them third (-1 after the row's end)."""
  order = jnp.argsort(token_paddings, axis=-1, stable=True)
  tokens = jnp.take_along_axis(tokens, order, axis=-1)
  token_paddings = jnp.take_along_axis(token_paddings, order, axis=-1)
  tokens = jnp.where(token_paddings > 0.5, blank_id, tokens)
  if frames is None:
    return tokens, token_paddings
  frames = jnp.where(token_paddings > 0.5, -1, jnp.take_along_axis(frames, order, axis=-1))
  return tokens, token_paddings, frames


def greedy_decode(enc: Array, enc_paddings: Array, init_pred_state, pred_step: PredStep,
                  joint: Joint, max_symbols_per_frame: int = 3, blank_id: int = 0,
                  return_frames: bool = False):
  """Frame-synchronous greedy RNN-T decoding of a batch; jit-able.

  Args:
    enc: [B, T, D] encoder output; enc_paddings [B, T] (1.0 = padded frame).
    init_pred_state: prediction-network state pytree, leading dim B.
    pred_step, joint: see the module docstring.
  Returns:
    tokens [B, T * max_symbols_per_frame] int32, left-aligned, blank_id after the end;
    token_paddings [B, T * max_symbols_per_frame], 1.0 after each row's last token;
    with return_frames, third: the encoder frame at which each token was emitted (int32, -1
    after the row's end), what word timings are made of.
  """
  batch, frames, _ = enc.shape
  if enc_paddings.shape != (batch, frames):
    raise DecodeError(f'enc_paddings shape {enc_paddings.shape} != (B, T) = {(batch, frames)}')
  carry = greedy_init(init_pred_state, pred_step, blank_id)
  _, tokens, paddings = greedy_frames(carry, enc, enc_paddings, pred_step, joint,
                                      max_symbols_per_frame, blank_id)
  tokens = tokens.reshape(batch, -1)                                     # [B, T*S]
  paddings = paddings.reshape(batch, -1)
  if not return_frames:
    return compact(tokens, paddings, blank_id)
  frame_of = jnp.broadcast_to(jnp.repeat(jnp.arange(frames, dtype=jnp.int32),
                                         max_symbols_per_frame)[None], tokens.shape)
  return compact(tokens, paddings, blank_id, frame_of)


def greedy_frames(carry: GreedyState, enc: Array, enc_paddings: Array, pred_step: PredStep,
                  joint: Joint, max_symbols_per_frame: int = 3, blank_id: int = 0):
  """`greedy_step` over the frames enc [B, T, D] from `carry`: (new carry, tokens [B, T, S],
  token_paddings [B, T, S]), S = max_symbols_per_frame. A stream decodes its blocks of frames
  with it one after another, carrying the state between them."""
  step = functools.partial(greedy_step, pred_step=pred_step, joint=joint,
                           max_symbols_per_frame=max_symbols_per_frame, blank_id=blank_id)

  def scan_body(carry, inputs):
    carry, tokens, paddings = step(carry, *inputs)
    return carry, (tokens, paddings)

  carry, (tokens, paddings) = jax.lax.scan(
      scan_body, carry, (jnp.swapaxes(enc, 0, 1), jnp.swapaxes(enc_paddings, 0, 1)))
  return carry, jnp.swapaxes(tokens, 0, 1), jnp.swapaxes(paddings, 0, 1)


# ---------------------------------------------------------------------------------------------
# Beam search.

class _Hyp(NamedTuple):
  labels: tuple[int, ...]
  score: float
  pred_state: Any      # pytree, leading dim 1, numpy
  pred_out: np.ndarray  # [P]
  frames: tuple[int, ...] = ()   # the frame of each label (of the best alignment merged in)


def _log_softmax(x: np.ndarray) -> np.ndarray:
  x = x.astype(np.float64)
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _stack_padded(items: Sequence[Any], size: int):
  """Concatenates pytrees with leading dim 1 along that dim, repeating the first up to `size`,
  so that the jitted callables see one batch shape."""
  items = list(items) + [items[0]] * (size - len(items))
  return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *items)


def _row(tree, i: int):
  return jax.tree_util.tree_map(lambda x: np.asarray(x[i:i + 1]), tree)


def beam_search(enc: Array, init_pred_state, pred_step: PredStep, joint: Joint,
                beam_width: int = 4, max_symbols_per_frame: int = 3, blank_id: int = 0,
                num_frames: int | None = None, return_frames: bool = False):
  """Frame-synchronous RNN-T beam search over one utterance.

  Args:
    enc: [T, D] encoder output of one utterance.
    init_pred_state: prediction-network state pytree with leading dim 1.
    pred_step, joint: as in the module docstring; wrap them in `jax.jit` beforehand, they are
      called once per expansion round with a batch of exactly `beam_width` rows.
    beam_width: hypotheses kept.
    max_symbols_per_frame: labels a hypothesis may emit per frame (then the frame ends).
    blank_id: the blank's id.
    num_frames: frames to decode (default T); the rest is padding.
    return_frames: also return the frame of each label, from the best-scoring alignment of
      those merged into the hypothesis.
  Returns:
    (best label sequence, its log-probability score[, frames]).

  Per frame, up to max_symbols_per_frame expansion rounds: every hypothesis still in the frame
  proposes ending it (+log p(blank)) or emitting one of its beam_width most likely labels; of the
  pool of hypotheses that have ended the frame (merged by label sequence) and these proposals,
  the beam_width best are kept, the emitters among them expand in the next round.
  """
  enc = np.asarray(enc)
  if enc.ndim != 2:
    raise DecodeError(f'beam_search decodes one utterance: enc must be [T, D], got {enc.shape}')
  if _batch_size(init_pred_state) != 1:
    raise DecodeError('beam_search needs init_pred_state with leading dim 1, got '
                      f'{_batch_size(init_pred_state)}')
  if beam_width < 1 or max_symbols_per_frame < 1:
    raise DecodeError(f'beam_width ({beam_width}) and max_symbols_per_frame '
                      f'({max_symbols_per_frame}) must be >= 1')
  frames = enc.shape[0] if num_frames is None else int(num_frames)

  def expand_pred(parents: list[_Hyp], labels: list[int]):
    """Runs pred_step on (parent state, label) pairs; returns per-row (out, state)."""
    out, state = pred_step(_stack_padded([p.pred_state for p in parents], beam_width),
                           jnp.asarray(labels + [blank_id] * (beam_width - len(labels)),
                                       jnp.int32))
    out, state = np.asarray(out), jax.tree_util.tree_map(np.asarray, state)
    return [(out[i], _row(state, i)) for i in range(len(parents))]

  start_state = jax.tree_util.tree_map(np.asarray, init_pred_state)
  start = _Hyp((), 0.0, start_state, None)
  (start_out, start_state), = expand_pred([start], [blank_id])
  hyps = [start._replace(pred_state=start_state, pred_out=start_out)]

  for t in range(frames):
    frame = np.broadcast_to(enc[t], (beam_width,) + enc[t].shape)
    ended: dict[tuple[int, ...], _Hyp] = {}   # hypotheses that have left frame t
    active = hyps
    for symbol in range(max_symbols_per_frame):
      if not active:
        break
      logp = _log_softmax(np.asarray(
          joint(frame, _stack_padded([h.pred_out[None] for h in active], beam_width))))
      proposals = []                          # (score, parent index, label)
      for i, hyp in enumerate(active):
        _merge(ended, hyp._replace(score=hyp.score + logp[i, blank_id]))
        row = logp[i].copy()
        row[blank_id] = -np.inf
        for label in np.argsort(-row, kind='stable')[:beam_width]:
          proposals.append((hyp.score + row[label], i, int(label)))
      # Keep the beam_width best of (ended hypotheses, proposals).
      pool = [(h.score, None, h) for h in ended.values()] + [(s, i, k) for s, i, k in proposals]
      pool.sort(key=lambda item: -item[0])
      kept = pool[:beam_width]
      ended = {h.labels: h for _, parent, h in kept if parent is None}
      chosen = [(s, parent, label) for s, parent, label in kept if parent is not None]
      if not chosen:
        break
      parents = [active[parent] for _, parent, _ in chosen]
      new_preds = expand_pred(parents, [label for _, _, label in chosen])
      active = [_Hyp(p.labels + (label,), s, state, out, p.frames + (t,))
                for (s, _, label), p, (out, state) in zip(chosen, parents, new_preds)]
      if symbol == max_symbols_per_frame - 1:   # the cap ends the frame without a blank
        for hyp in active:
          _merge(ended, hyp)
        active = []
    hyps = sorted(ended.values(), key=lambda h: -h.score)[:beam_width]

  best = max(hyps, key=lambda h: h.score)
  if return_frames:
    return list(best.labels), float(best.score), list(best.frames)
  return list(best.labels), float(best.score)


def _merge(ended: dict, hyp: _Hyp) -> None:
  """Adds a hypothesis that has left the frame, log-adding scores of equal label sequences."""
  same = ended.get(hyp.labels)
  if same is not None:
    frames = same.frames if same.score >= hyp.score else hyp.frames
    hyp = same._replace(score=float(np.logaddexp(same.score, hyp.score)), frames=frames)
  ended[hyp.labels] = hyp


def beam_search_batch(enc: Array, enc_paddings: Array, init_pred_state, pred_step: PredStep,
                      joint: Joint, **kwargs) -> list[tuple]:
  """`beam_search` on each utterance of a batch enc [B, T, D] with enc_paddings [B, T]."""
  enc, enc_paddings = np.asarray(enc), np.asarray(enc_paddings)
  lengths = np.round((1.0 - enc_paddings).sum(axis=1)).astype(int)
  results = []
  for b in range(enc.shape[0]):
    state = jax.tree_util.tree_map(lambda x, b=b: np.asarray(x)[b:b + 1], init_pred_state)
    results.append(beam_search(enc[b], state, pred_step, joint, num_frames=int(lengths[b]),
                               **kwargs))
  return results
