"""Audio batch -> encoder input: log-mel, global mean/variance normalisation, SpecAugment
(training only), frame stacking. Runs inside the jit-compiled step, on the accelerator."""
import jax.numpy as jnp

from asr import frontend


def featurize(audio, audio_paddings, cfg, stats, rng=None):
  """audio [B, N] int16/float, paddings [B, N] -> (feats [B, T', M*stack], paddings [B, T'])."""
  feats, paddings = frontend.log_mel(
      audio, audio_paddings, num_mels=cfg.num_mels, window_ms=cfg.window_ms, hop_ms=cfg.hop_ms)
  feats = frontend.normalize(feats, paddings, jnp.asarray(stats['mean']),
                             jnp.asarray(stats['std']))
  if rng is not None and cfg.spec_augment:
    feats = frontend.spec_augment(
        rng, feats, paddings, num_freq_masks=cfg.freq_masks, freq_mask_width=cfg.freq_mask_width,
        num_time_masks=cfg.time_masks, time_mask_max_ratio=cfg.time_mask_ratio)
  return frontend.stack_frames(feats, paddings, stack=cfg.stack, stride=cfg.stride)


def feature_dim(cfg) -> int:
  return cfg.num_mels * cfg.stack


def frame_seconds(cfg) -> float:
  """Duration of one encoder frame (after stacking): the arrival interval for latency."""
  return cfg.hop_ms * cfg.stride / 1000.0
