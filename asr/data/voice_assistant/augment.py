"""Audio augmentation in numpy/scipy: resampling, speed, reverberation, noise, gain.

Pure functions of (audio, numpy Generator): the same seed gives the same samples on the same
machine. No sox needed, so a machine with flite alone can still build the corpus.
"""
import dataclasses
import math

import numpy as np
from scipy import signal

SAMPLE_RATE = 16000


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  speed: tuple[float, float] = (0.9, 1.1)      # tempo and pitch together, like sox `speed`
  reverb_prob: float = 0.35
  rt60_s: tuple[float, float] = (0.15, 0.7)     # reverberation time of the synthetic room
  noise_prob: float = 0.75
  snr_db: tuple[float, float] = (10.0, 30.0)
  gain_db: tuple[float, float] = (-8.0, 6.0)    # around a -23 dBFS speech level
  pad_s: tuple[float, float] = (0.05, 0.35)     # silence before and after the speech


def resample(audio: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
  """Polyphase resampling between any two integer rates."""
  if sr_in == sr_out:
    return audio.astype(np.float32, copy=False)
  g = math.gcd(int(sr_in), int(sr_out))
  up, down = sr_out // g, sr_in // g
  if max(up, down) > 2000:   # rates with no small common factor: FFT resampling is cheaper
    n_out = int(round(len(audio) * sr_out / sr_in))
    return signal.resample(audio, n_out).astype(np.float32)
  return signal.resample_poly(audio, up, down).astype(np.float32)


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
  """Plays `audio` `factor` times faster (duration / factor), quantised to 1% steps."""
  steps = int(round(factor * 100))
  if steps == 100:
    return audio
  g = math.gcd(100, steps)
  return signal.resample_poly(audio, 100 // g, steps // g).astype(np.float32)


def synthetic_rir(rng: np.random.Generator, rt60_s: float, sr: int = SAMPLE_RATE) -> np.ndarray:
  """A room impulse response: direct path plus exponentially decaying noise (-60 dB at rt60)."""
  n = max(int(rt60_s * sr), 16)
  t = np.arange(n) / sr
  tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60_s)   # ln(1000) = 6.9078
  tail = signal.lfilter([0.6], [1, -0.4], tail)                   # walls absorb the highs
  onset = int(rng.uniform(0.002, 0.01) * sr)                       # first reflection delay
  tail[:onset] = 0
  rir = tail / (np.sqrt(np.sum(tail**2)) + 1e-9) * rng.uniform(0.3, 1.0)
  rir[0] = 1.0
  return rir.astype(np.float32)


def add_reverb(audio: np.ndarray, rng: np.random.Generator, rt60_s: float) -> np.ndarray:
  wet = signal.fftconvolve(audio, synthetic_rir(rng, rt60_s))[:len(audio) + int(0.2 * rt60_s *
                                                                               SAMPLE_RATE)]
  return wet.astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
  """White, pink (1/f), brown (1/f^2) or hum (mains harmonics plus a little white) noise."""
  if kind == 'hum':
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.choice([50.0, 60.0])
    hum = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
    return (hum + 0.05 * rng.standard_normal(n)).astype(np.float32)
  white = rng.standard_normal(n)
  if kind == 'white':
    return white.astype(np.float32)
  spectrum = np.fft.rfft(white)
  freqs = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
  spectrum /= np.sqrt(freqs) if kind == 'pink' else freqs
  return np.fft.irfft(spectrum, n).astype(np.float32)


def add_noise(audio: np.ndarray, rng: np.random.Generator, snr_db: float,
              speech_power: float) -> np.ndarray:
  kind = str(rng.choice(['white', 'pink', 'pink', 'brown', 'hum']))
  noise = coloured_noise(rng, len(audio), kind)
  noise_power = float(np.mean(noise**2)) + 1e-12
  scale = math.sqrt(speech_power / (noise_power * 10**(snr_db / 10)))
  return (audio + scale * noise).astype(np.float32)


def to_int16(audio: np.ndarray) -> np.ndarray:
  return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def augment(audio: np.ndarray, sr: int, rng: np.random.Generator,
            config: AugmentConfig = AugmentConfig()) -> np.ndarray:
  """TTS output (float, any rate) -> augmented int16 audio at 16 kHz mono."""
  audio = resample(np.asarray(audio, np.float32), sr)
  audio = audio / (np.max(np.abs(audio)) + 1e-9)
  audio = change_speed(audio, rng.uniform(*config.speed))
  # Speech power from the voiced part, before padding and reverberation.
  speech_power = float(np.mean(audio**2)) + 1e-12
  pads = (rng.uniform(*config.pad_s, size=2) * SAMPLE_RATE).astype(int)
  audio = np.concatenate([np.zeros(pads[0], np.float32), audio, np.zeros(pads[1], np.float32)])
  if rng.random() < config.reverb_prob:
    audio = add_reverb(audio, rng, rng.uniform(*config.rt60_s))
  if rng.random() < config.noise_prob:
    audio = add_noise(audio, rng, rng.uniform(*config.snr_db), speech_power)
  level_db = -23.0 + rng.uniform(*config.gain_db)
  audio = audio * (10**(level_db / 20) / math.sqrt(speech_power))
  peak = float(np.max(np.abs(audio)))
  if peak > 0.99:                  # a limiter, not clipping: keep the waveform intact
    audio *= 0.99 / peak
  return to_int16(audio)
