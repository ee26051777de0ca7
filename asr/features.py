"""Audio batch -> encoder input: log-mel, global mean/variance normalisation, causal mean
normalisation (optional), SpecAugment and vocal-tract-length perturbation (training only), frame
stacking. Runs inside the jit-compiled step, on the accelerator. A
training set may carry its log-mel computed once (`Dataset.cache_log_mel`); normalisation,
SpecAugment and stacking still run every step, so every step draws its own masks."""
import jax
import jax.numpy as jnp

from asr import frontend


def log_mel(audio, audio_paddings, cfg):
  """audio [B, N] int16/float, paddings [B, N] -> (log-mel [B, T, M], paddings [B, T])."""
  return frontend.log_mel(audio, audio_paddings, num_mels=cfg.num_mels,
                          window_ms=cfg.window_ms, hop_ms=cfg.hop_ms)


def featurize(audio, audio_paddings, cfg, stats, rng=None):
  """audio [B, N] int16/float, paddings [B, N] -> (feats [B, T', M*stack], paddings [B, T'])."""
  return from_log_mel(*log_mel(audio, audio_paddings, cfg), cfg, stats, rng)


def from_log_mel(feats, paddings, cfg, stats, rng=None):
  """Log-mel [B, T, M] -> VTLP-warped (with rng), normalised, SpecAugmented (with rng), stacked."""
  if rng is not None and cfg.vtlp_warp > 0:
    rng, warp_key = jax.random.split(rng)
    alpha = jax.random.uniform(warp_key, feats.shape[:1], minval=1.0 - cfg.vtlp_warp,
                               maxval=1.0 + cfg.vtlp_warp)
    feats = frontend.vtlp(feats, alpha)
  feats = frontend.normalize(feats, paddings, jnp.asarray(stats['mean']),
                             jnp.asarray(stats['std']))
  if cfg.causal_cmn:
    feats, _ = frontend.causal_mean_norm(feats, paddings, cfg.cmn_prior_frames)
  if rng is not None and cfg.spec_augment:
    feats = frontend.spec_augment(
        rng, feats, paddings, num_freq_masks=cfg.freq_masks, freq_mask_width=cfg.freq_mask_width,
        num_time_masks=cfg.time_masks, time_mask_max_ratio=cfg.time_mask_ratio)
  return frontend.stack_frames(feats, paddings, stack=cfg.stack, stride=cfg.stride)


def featurize_batch(batch, cfg, stats, rng=None):
  """A batch from `asr.data.batching.Dataset`: its cached log-mel when it carries one (the
  same values the audio would give), else its audio."""
  if 'log_mel' in batch:
    return from_log_mel(batch['log_mel'], batch['log_mel_paddings'], cfg, stats, rng)
  return featurize(batch['audio'], batch['audio_paddings'], cfg, stats, rng)


def feature_dim(cfg) -> int:
  return cfg.num_mels * cfg.stack


def frame_seconds(cfg) -> float:
  """Duration of one encoder frame (after stacking): the arrival interval for latency."""
  return cfg.hop_ms * cfg.stride / 1000.0
