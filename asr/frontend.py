"""Audio frontend: log-mel features, global (and optional causal per-utterance) normalisation,
frame stacking and SpecAugment.

Conventions (docs/DESIGN.md "Gaps in the papers": 25 ms windows, 10 ms hop, 80 log-mels, 3 frames
stacked and subsampled to 30 ms):
- Audio is float in [-1, 1] or int16 (scaled by 1/32768); `audio_paddings` is 1.0 at padded
  samples, and padded samples are zeroed before anything else.
- Pre-emphasis runs over the whole signal: y[n] = x[n] - alpha * x[n-1], y[0] = x[0].
- Frames lie fully inside the array: T = 1 + (N - win) // hop, frame t covering samples
  [t*hop, t*hop + win). Frame t is padded if it extends past the valid length
  (t*hop + win > number of valid samples). Padded frames' features are 0.
- Window: periodic Hann, w[n] = 0.5 - 0.5 cos(2 pi n / win), zero-padded to `fft_size`;
  power spectrum |rfft|^2 over fft_size // 2 + 1 bins.
- Mel filterbank: HTK mel scale mel(f) = 2595 log10(1 + f / 700); `num_mels` triangles whose
  edges and centres are equally spaced in mel between `lower_edge_hz` and `upper_edge_hz`;
  the weights are triangular in mel (peak 1 at the centre, no area normalisation).
- log(max(mel_energy, eps)).

Everything here on device is jit-able for fixed shapes (the size arguments are static Python
numbers); the statistics code (`compute_stats`, `save_stats`, `load_stats`) is host numpy.
"""
import json
import os
from typing import Iterable, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np


class FrontendError(ValueError):
  """Audio, features or statistics the frontend cannot use."""


def hz_to_mel(hz):
  """HTK mel scale."""
  return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel):
  return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_filterbank(num_mels: int = 80, fft_size: int = 512, sample_rate: int = 16000,
                   lower_edge_hz: float = 125.0, upper_edge_hz: float = 7600.0) -> np.ndarray:
  """[fft_size // 2 + 1, num_mels] float32 triangular filters (see the module docstring)."""
  if not 0.0 <= lower_edge_hz < upper_edge_hz <= sample_rate / 2:
    raise FrontendError(f'frontend: need 0 <= lower_edge_hz < upper_edge_hz <= sample_rate/2, '
                        f'got {lower_edge_hz}, {upper_edge_hz}, sample_rate={sample_rate}')
  edges = np.linspace(hz_to_mel(lower_edge_hz), hz_to_mel(upper_edge_hz), num_mels + 2)
  left, center, right = edges[:-2], edges[1:-1], edges[2:]
  bin_mel = hz_to_mel(np.arange(fft_size // 2 + 1) * sample_rate / fft_size)[:, None]
  rising = (bin_mel - left) / (center - left)
  falling = (right - bin_mel) / (right - center)
  return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def frame_paddings(valid_samples, num_frames: int, win: int, hop: int):
  """[B, T] 1.0 where frame t extends past the valid samples."""
  frame_end = jnp.arange(num_frames) * hop + win
  return (frame_end[None, :] > valid_samples[:, None]).astype(jnp.float32)


def log_mel(audio, audio_paddings, sample_rate: int = 16000, num_mels: int = 80,
            window_ms: float = 25.0, hop_ms: float = 10.0, fft_size: int = 512,
            preemphasis: float = 0.97, lower_edge_hz: float = 125.0,
            upper_edge_hz: float = 7600.0, eps: float = 1e-6):
  """Log-mel features.

  Args:
    audio: [B, N] float in [-1, 1] or int16.
    audio_paddings: [B, N], 1.0 at padded samples (trailing).
    preemphasis: alpha; 0 turns pre-emphasis off.
  Returns:
    (feats [B, T, num_mels] float32, paddings [B, T]) with T = 1 + (N - win) // hop.
  """
  audio = jnp.asarray(audio)
  if audio.dtype == jnp.int16:
    audio = audio.astype(jnp.float32) / 32768.0
  elif jnp.issubdtype(audio.dtype, jnp.floating):
    audio = audio.astype(jnp.float32)
  else:
    raise FrontendError(f'frontend: audio dtype {audio.dtype} is neither float nor int16')
  if audio.ndim != 2 or tuple(jnp.shape(audio_paddings)) != audio.shape:
    raise FrontendError(f'frontend: audio must be [B, N] with paddings of the same shape, got '
                        f'{audio.shape} and {jnp.shape(audio_paddings)}')
  win = int(round(sample_rate * window_ms / 1000.0))
  hop = int(round(sample_rate * hop_ms / 1000.0))
  if fft_size < win:
    raise FrontendError(f'frontend: fft_size={fft_size} is shorter than the window ({win})')
  num_samples = audio.shape[1]
  if num_samples < win:
    raise FrontendError(f'frontend: {num_samples} samples is shorter than one window ({win})')
  num_frames = 1 + (num_samples - win) // hop

  valid = 1.0 - jnp.asarray(audio_paddings, jnp.float32)
  audio = audio * valid
  if preemphasis:
    audio = jnp.concatenate([audio[:, :1], audio[:, 1:] - preemphasis * audio[:, :-1]], axis=1)
  index = np.arange(num_frames)[:, None] * hop + np.arange(win)[None, :]
  frames = audio[:, index]                                               # [B, T, win]
  window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)
  spectrum = jnp.fft.rfft(frames * window.astype(np.float32), n=fft_size, axis=-1)
  power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
  filters = mel_filterbank(num_mels, fft_size, sample_rate, lower_edge_hz, upper_edge_hz)
  mel = jnp.matmul(power, filters, precision=jax.lax.Precision.HIGHEST)
  feats = jnp.log(jnp.maximum(mel, eps))

  valid_samples = jnp.round(jnp.sum(valid, axis=1)).astype(jnp.int32)
  paddings = frame_paddings(valid_samples, num_frames, win, hop)
  return feats * (1.0 - paddings)[..., None], paddings


class FeatureStats(NamedTuple):
  """Global per-feature mean and standard deviation; unpacks as (mean, std)."""
  mean: np.ndarray
  std: np.ndarray


def compute_stats(batches: Iterable[Tuple[np.ndarray, np.ndarray]],
                  min_std: float = 1e-3) -> FeatureStats:
  """Mean and (population) std over the valid frames of all batches of (feats, paddings).

  Batches are merged with Chan et al.'s pairwise update in float64, so a large offset or many
  frames do not cancel the variance. std is floored at `min_std` (a constant feature stays
  finite after normalisation).
  """
  count, mean, m2 = 0, None, None
  for feats, paddings in batches:
    feats = np.asarray(feats, np.float64)
    valid = np.asarray(paddings) < 0.5
    if feats.shape[:-1] != valid.shape:
      raise FrontendError(f'frontend: feats {feats.shape} and paddings {valid.shape} disagree')
    rows = feats[valid]                                                  # [n, M]
    if mean is not None and rows.shape[-1] != mean.shape[0]:
      raise FrontendError(f'frontend: feature size changed from {mean.shape[0]} to '
                          f'{rows.shape[-1]} between batches')
    if rows.shape[0] == 0:
      continue
    n_b = rows.shape[0]
    mean_b = rows.mean(axis=0)
    m2_b = ((rows - mean_b) ** 2).sum(axis=0)
    if mean is None:
      count, mean, m2 = n_b, mean_b, m2_b
      continue
    total = count + n_b
    delta = mean_b - mean
    mean = mean + delta * (n_b / total)
    m2 = m2 + m2_b + delta ** 2 * (count * n_b / total)
    count = total
  if not count:
    raise FrontendError('frontend: compute_stats saw no valid frame')
  std = np.maximum(np.sqrt(m2 / count), min_std)
  return FeatureStats(mean.astype(np.float32), std.astype(np.float32))


def normalize(feats, paddings, mean, std):
  """(feats - mean) / std on valid frames; padded frames are 0."""
  out = (feats - jnp.asarray(mean, feats.dtype)) / jnp.asarray(std, feats.dtype)
  return out * (1.0 - jnp.asarray(paddings, feats.dtype))[..., None]


def causal_mean_norm(feats, paddings, prior_frames: float, state=None):
  """Each valid frame minus the mean of the valid frames up to and including it, that mean
  starting from `prior_frames` frames at 0 (the global mean, after `normalize`): a speaker's or
  engine's spectral offset is taken out as the utterance goes on, using no future frame, so a
  stream computes exactly what the whole recording gives.

  state: (sum [B, M], count [B]) of the frames before these (a stream's earlier blocks); None
  for the start of an utterance. Returns (feats [B, T, M], state after the valid frames).
  """
  valid = 1.0 - jnp.asarray(paddings, feats.dtype)
  if state is None:
    state = (jnp.zeros((feats.shape[0], feats.shape[-1]), feats.dtype),
             jnp.zeros(feats.shape[:1], feats.dtype))
  sums = state[0][:, None] + jnp.cumsum(feats * valid[..., None], axis=1)
  counts = state[1][:, None] + jnp.cumsum(valid, axis=1)
  out = (feats - sums / (counts + prior_frames)[..., None]) * valid[..., None]
  return out, (sums[:, -1], counts[:, -1])


def save_stats(path: str, mean, std) -> None:
  mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
  if mean.shape != std.shape or mean.ndim != 1:
    raise FrontendError(f'frontend: stats for {path} need 1-D mean and std of equal length, '
                        f'got {mean.shape} and {std.shape}')
  with open(path + '.tmp', 'w') as f:    # atomic: another process may be reading it
    json.dump({'num_features': int(mean.shape[0]), 'mean': mean.tolist(),
               'std': std.tolist()}, f, indent=1)
  os.replace(path + '.tmp', path)


def load_stats(path: str) -> FeatureStats:
  with open(path) as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise FrontendError(f'frontend: {path} is not JSON: {e}') from None
  for key in ('mean', 'std'):
    if not isinstance(data, dict) or key not in data:
      raise FrontendError(f'frontend: {path} has no key {key!r}')
  mean = np.asarray(data['mean'], np.float32)
  std = np.asarray(data['std'], np.float32)
  if mean.ndim != 1 or mean.shape != std.shape:
    raise FrontendError(f'frontend: {path}: mean {mean.shape} and std {std.shape} must be '
                        f'1-D of equal length')
  if 'num_features' in data and data['num_features'] != mean.shape[0]:
    raise FrontendError(f"frontend: {path}: num_features={data['num_features']} but mean has "
                        f'{mean.shape[0]}')
  if not np.all(np.isfinite(mean)) or not np.all(std > 0):
    raise FrontendError(f'frontend: {path}: mean must be finite and std > 0')
  return FeatureStats(mean, std)


def stack_frames(feats, paddings, stack: int = 3, stride: int = 3):
  """Concatenates `stack` consecutive frames every `stride` frames.

  Output frame j is [feats[j*stride], ..., feats[j*stride + stack - 1]] (frame-major), for
  T' = 1 + (T - stack) // stride frames fully inside the input; it is padded if any of its
  frames is.
  Returns: ([B, T', M * stack], [B, T']).
  """
  batch, num_frames, dim = feats.shape
  if stack < 1 or stride < 1:
    raise FrontendError(f'frontend: stack={stack} and stride={stride} must be >= 1')
  if num_frames < stack:
    raise FrontendError(f'frontend: {num_frames} frames cannot be stacked by {stack}')
  out_frames = 1 + (num_frames - stack) // stride
  index = np.arange(out_frames)[:, None] * stride + np.arange(stack)[None, :]
  stacked = feats[:, index].reshape(batch, out_frames, stack * dim)
  return stacked, jnp.max(jnp.asarray(paddings)[:, index], axis=-1)


def vtlp_source_hz(hz, alpha, boundary_hz: float = 4800.0, top_hz: float = 7600.0):
  """Vocal-tract-length perturbation's inverse warp: the input frequency that the warped
  spectrum shows at `hz`. The warp maps f -> alpha f up to a boundary (boundary_hz *
  min(alpha, 1) / alpha) and then linearly onto [.., top_hz], so top_hz stays fixed and the
  warp is continuous and increasing. hz [..., M] and alpha [...] broadcast from the left."""
  alpha = jnp.asarray(alpha, jnp.float32)[..., None]
  edge = boundary_hz * jnp.minimum(alpha, 1.0) / alpha          # input frequency of the kink
  warped_edge = alpha * edge
  slope = (top_hz - warped_edge) / (top_hz - edge)               # of the upper piece
  return jnp.where(hz <= warped_edge, hz / alpha, edge + (hz - warped_edge) / slope)


def vtlp(log_mel_feats, alpha, lower_edge_hz: float = 125.0, upper_edge_hz: float = 7600.0):
  """Warps log-mel features [B, T, M] along frequency by a factor alpha [B] per utterance.

  Each output band at centre frequency c reads the input at `vtlp_source_hz(c)`, linearly
  interpolated between the two nearest input bands (so it also applies to log-mel computed
  once and cached). alpha = 1 returns the input.
  """
  num_mels = log_mel_feats.shape[-1]
  edges = np.linspace(hz_to_mel(lower_edge_hz), hz_to_mel(upper_edge_hz), num_mels + 2)
  centres_hz = jnp.asarray(mel_to_hz(edges[1:-1]), jnp.float32)
  source_mel = 2595.0 * jnp.log10(1.0 + vtlp_source_hz(centres_hz, alpha,
                                                        top_hz=upper_edge_hz) / 700.0)
  position = jnp.clip((source_mel - edges[1]) / (edges[2] - edges[1]), 0, num_mels - 1)  # [B, M]
  low = jnp.floor(position).astype(jnp.int32)
  high = jnp.minimum(low + 1, num_mels - 1)
  frac = (position - low)[:, None, :]
  take = lambda i: jnp.take_along_axis(log_mel_feats, jnp.broadcast_to(
      i[:, None, :], log_mel_feats.shape), axis=-1)
  return take(low) * (1.0 - frac) + take(high) * frac


def spec_augment_masks(rng, paddings, num_features: int, num_freq_masks: int = 2,
                       freq_mask_width: int = 15, num_time_masks: int = 2,
                       time_mask_max_ratio: float = 0.05):
  """Boolean masks (time [B, T], freq [B, M]), drawn independently per utterance.

  Each frequency mask has width w ~ U{0..freq_mask_width} and start ~ U{0..M - w}; each time
  mask has width w ~ U{0..floor(ratio * L)} for the utterance's valid length L and start ~
  U{0..L - w}, so time masks stay inside the valid frames.
  """
  paddings = jnp.asarray(paddings)
  batch, num_frames = paddings.shape
  freq_key, time_key = jax.random.split(rng)
  fw_key, fs_key = jax.random.split(freq_key)
  tw_key, ts_key = jax.random.split(time_key)

  max_fw = min(freq_mask_width, num_features)
  f_width = jax.random.randint(fw_key, (batch, num_freq_masks), 0, max_fw + 1)
  f_start = jax.random.randint(fs_key, (batch, num_freq_masks), 0, num_features - f_width + 1)
  bins = jnp.arange(num_features)[None, None, :]
  freq_mask = jnp.any((bins >= f_start[..., None]) & (bins < (f_start + f_width)[..., None]),
                      axis=1)

  valid = paddings < 0.5
  length = jnp.sum(valid, axis=1).astype(jnp.int32)
  max_tw = jnp.floor(time_mask_max_ratio * length.astype(jnp.float32)).astype(jnp.int32)
  t_width = jax.random.randint(tw_key, (batch, num_time_masks), 0, max_tw[:, None] + 1)
  t_start = jax.random.randint(ts_key, (batch, num_time_masks), 0,
                               length[:, None] - t_width + 1)
  frames = jnp.arange(num_frames)[None, None, :]
  time_mask = jnp.any((frames >= t_start[..., None]) & (frames < (t_start + t_width)[..., None]),
                      axis=1) & valid
  return time_mask, freq_mask


def spec_augment(rng, feats, paddings, num_freq_masks: int = 2, freq_mask_width: int = 15,
                 num_time_masks: int = 2, time_mask_max_ratio: float = 0.05,
                 mask_value: float = 0.0):
  """SpecAugment without time warping: returns feats with the masked cells set to mask_value
  (0, the mean of normalised features). Padded frames are left as they are."""
  time_mask, freq_mask = spec_augment_masks(
      rng, paddings, feats.shape[-1], num_freq_masks, freq_mask_width, num_time_masks,
      time_mask_max_ratio)
  mask = time_mask[:, :, None] | freq_mask[:, None, :]
  mask = mask & (jnp.asarray(paddings) < 0.5)[:, :, None]
  return jnp.where(mask, jnp.asarray(mask_value, feats.dtype), feats)
