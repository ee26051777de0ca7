"""Tests for asr/frontend.py against independent numpy references (direct DFT, loop filterbank)."""
import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from asr import frontend

SR, WIN, HOP, NFFT = 16000, 400, 160, 512


def _reference_log_mel(signal, num_mels=80, lo=125.0, hi=7600.0, alpha=0.97, eps=1e-6):
  """One utterance, float64, written from textbook formulas without the module's helpers."""
  x = np.asarray(signal, np.float64)
  y = np.array([x[0]] + [x[n] - alpha * x[n - 1] for n in range(1, len(x))])
  num_frames = 1 + (len(y) - WIN) // HOP
  window = np.array([math.sin(math.pi * n / WIN) ** 2 for n in range(WIN)])  # periodic Hann
  k = np.arange(NFFT // 2 + 1)[:, None]
  n = np.arange(WIN)[None, :]
  cos, sin = np.cos(2 * np.pi * k * n / NFFT), np.sin(2 * np.pi * k * n / NFFT)
  mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)        # HTK, natural-log form
  edges = [mel(lo) + (mel(hi) - mel(lo)) * j / (num_mels + 1) for j in range(num_mels + 2)]
  bank = np.zeros((NFFT // 2 + 1, num_mels))
  for b in range(NFFT // 2 + 1):
    m = mel(b * SR / NFFT)
    for j in range(num_mels):
      l, c, r = edges[j], edges[j + 1], edges[j + 2]
      if l < m <= c:
        bank[b, j] = (m - l) / (c - l)
      elif c < m < r:
        bank[b, j] = (r - m) / (r - c)
  out = []
  for t in range(num_frames):
    frame = y[t * HOP:t * HOP + WIN] * window
    power = (cos @ frame) ** 2 + (sin @ frame) ** 2
    out.append(np.log(np.maximum(power @ bank, eps)))
  return np.array(out)


def test_log_mel_matches_direct_dft_reference():
  rng = np.random.default_rng(0)
  audio = (0.1 * rng.normal(size=(2, 2000))).astype(np.float32)
  feats, paddings = jax.jit(frontend.log_mel)(audio, np.zeros_like(audio))
  assert feats.shape == (2, 1 + (2000 - WIN) // HOP, 80) and not paddings.any()
  for b in range(2):
    np.testing.assert_allclose(feats[b], _reference_log_mel(audio[b]), atol=2e-3)


def test_filterbank_textbook_points():
  bank = frontend.mel_filterbank(80, NFFT, SR, 125.0, 7600.0)
  np.testing.assert_allclose(frontend.hz_to_mel(1000.0), 1000.0, atol=0.05)   # HTK anchor
  np.testing.assert_allclose(frontend.mel_to_hz(frontend.hz_to_mel(3456.0)), 3456.0)
  centers_mel = np.linspace(frontend.hz_to_mel(125), frontend.hz_to_mel(7600), 82)[1:-1]
  bin_hz = np.arange(NFFT // 2 + 1) * SR / NFFT
  for j in (0, 40, 79):
    peak = np.argmax(bank[:, j])
    # The peak bin is a bin next to the centre frequency, and its weight is the triangle's.
    assert abs(bin_hz[peak] - frontend.mel_to_hz(centers_mel[j])) <= SR / NFFT
    spacing = centers_mel[1] - centers_mel[0]
    expected = 1 - abs(frontend.hz_to_mel(bin_hz[peak]) - centers_mel[j]) / spacing
    np.testing.assert_allclose(bank[peak, j], expected, rtol=1e-5)
  # Below the lowest and above the highest edge nothing passes.
  assert not bank[bin_hz <= 125].any() and not bank[bin_hz >= 7600].any()


@pytest.mark.parametrize('tone_hz', [440.0, 1000.0, 3000.0])
def test_pure_tone_lands_in_nearest_mel_bin(tone_hz):
  t = np.arange(4000) / SR
  audio = (0.5 * np.sin(2 * np.pi * tone_hz * t))[None].astype(np.float32)
  feats, _ = frontend.log_mel(audio, np.zeros_like(audio), preemphasis=0.0)
  centers_hz = frontend.mel_to_hz(
      np.linspace(frontend.hz_to_mel(125), frontend.hz_to_mel(7600), 82)[1:-1])
  assert np.argmax(np.asarray(feats[0]).mean(0)) == np.argmin(abs(centers_hz - tone_hz))


def test_int16_input_and_padding():
  rng = np.random.default_rng(1)
  audio16 = rng.integers(-8000, 8000, size=(2, 3000)).astype(np.int16)
  valid_len = np.array([3000, 1500])
  pads = (np.arange(3000)[None] >= valid_len[:, None]).astype(np.float32)
  feats16, p16 = frontend.log_mel(audio16, pads)
  feats, p = frontend.log_mel(audio16.astype(np.float32) / 32768.0, pads)
  np.testing.assert_allclose(feats16, feats, atol=1e-5)
  frame_end = np.arange(feats.shape[1]) * HOP + WIN
  np.testing.assert_array_equal(p16, (frame_end[None] > valid_len[:, None]).astype(np.float32))
  assert not np.asarray(feats16)[p16 > 0].any()
  # Garbage in the padded samples changes nothing.
  noisy = np.where(pads > 0, 30000, audio16).astype(np.int16)
  np.testing.assert_allclose(frontend.log_mel(noisy, pads)[0], feats16, atol=1e-6)


def test_bad_audio_raises():
  with pytest.raises(frontend.FrontendError, match='shorter than one window'):
    frontend.log_mel(np.zeros((1, 100), np.float32), np.zeros((1, 100)))
  with pytest.raises(frontend.FrontendError, match='int32'):
    frontend.log_mel(np.zeros((1, 1000), np.int32), np.zeros((1, 1000)))


def _loop_stack(feats, paddings, stack, stride):
  out, out_pad = [], []
  t = 0
  while t + stack <= feats.shape[1]:
    out.append(np.concatenate([feats[:, t + i] for i in range(stack)], axis=-1))
    out_pad.append(np.max(paddings[:, t:t + stack], axis=1))
    t += stride
  return np.stack(out, 1), np.stack(out_pad, 1)


@pytest.mark.parametrize('stack, stride', [(3, 3), (4, 2), (1, 1)])
def test_stack_frames_matches_loop(stack, stride):
  rng = np.random.default_rng(2)
  feats = rng.normal(size=(2, 11, 5)).astype(np.float32)
  paddings = (np.arange(11)[None] >= np.array([[11], [7]])).astype(np.float32)
  out, out_pad = jax.jit(functools.partial(frontend.stack_frames, stack=stack, stride=stride))(
      feats, paddings)
  ref, ref_pad = _loop_stack(feats, paddings, stack, stride)
  np.testing.assert_array_equal(out, ref)
  np.testing.assert_array_equal(out_pad, ref_pad)


def test_compute_stats_is_exact_and_ignores_padding():
  rng = np.random.default_rng(3)
  batches, valid_rows = [], []
  for size in (3, 1, 4):
    feats = (1e4 + rng.normal(size=(size, 6, 4)) * [1, 2, 3, 1e-2]).astype(np.float32)
    paddings = (rng.uniform(size=(size, 6)) < 0.3).astype(np.float32)
    garbage = np.where(paddings[..., None] > 0, -1e9, feats)
    batches.append((garbage, paddings))
    valid_rows.append(feats[paddings < 0.5].astype(np.float64))
  rows = np.concatenate(valid_rows)
  mean, std = frontend.compute_stats(iter(batches), min_std=1e-6)
  np.testing.assert_allclose(mean, rows.mean(0), rtol=1e-7)
  np.testing.assert_allclose(std, rows.std(0), rtol=1e-4)
  with pytest.raises(frontend.FrontendError, match='no valid frame'):
    frontend.compute_stats([(np.zeros((1, 2, 4)), np.ones((1, 2)))])


def test_normalize_and_stats_file_roundtrip(tmp_path):
  feats = jnp.asarray(np.random.default_rng(4).normal(size=(2, 5, 3)), jnp.float32)
  paddings = jnp.array([[0, 0, 0, 1, 1], [0] * 5], jnp.float32)
  mean, std = np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.5, 1.0])
  path = str(tmp_path / 'stats.json')
  frontend.save_stats(path, mean, std)
  loaded = frontend.load_stats(path)
  np.testing.assert_allclose(loaded.mean, mean)
  np.testing.assert_allclose(loaded.std, std)
  out = jax.jit(frontend.normalize)(feats, paddings, loaded.mean, loaded.std)
  expected = (np.asarray(feats) - mean) / std * (1 - np.asarray(paddings))[..., None]
  np.testing.assert_allclose(out, expected, rtol=1e-6)
  assert not np.asarray(out)[0, 3:].any()


def test_causal_mean_norm_matches_a_loop_and_carries_across_blocks():
  rng = np.random.default_rng(3)
  feats = rng.standard_normal((2, 30, 5)).astype(np.float32) + 2.0
  lengths = [30, 17]
  paddings = (np.arange(30)[None] >= np.array(lengths)[:, None]).astype(np.float32)
  prior = 7.0
  want = np.zeros_like(feats)
  for b, n in enumerate(lengths):           # frame t minus the mean of frames 0..t with the prior
    for t in range(n):
      want[b, t] = feats[b, t] - feats[b, :t + 1].sum(0) / (t + 1 + prior)
  got, (sums, counts) = frontend.causal_mean_norm(jnp.asarray(feats), paddings, prior)
  np.testing.assert_allclose(got, want, atol=1e-5)
  np.testing.assert_allclose(counts, lengths)
  np.testing.assert_allclose(sums[1], feats[1, :17].sum(0), rtol=1e-5)
  # In two blocks, the second starting from the first's state: the same frames.
  first, state = frontend.causal_mean_norm(jnp.asarray(feats[:, :12]), paddings[:, :12], prior)
  second, _ = frontend.causal_mean_norm(jnp.asarray(feats[:, 12:]), paddings[:, 12:], prior,
                                        state)
  np.testing.assert_allclose(np.concatenate([first, second], 1), want, atol=1e-5)


@pytest.mark.parametrize('content, match', [
    ({'mean': [0.0, 1.0]}, "no key 'std'"),
    ({'mean': [0.0], 'std': [1.0, 1.0]}, 'equal length'),
    ({'mean': [0.0], 'std': [0.0]}, 'std > 0'),
])
def test_load_stats_rejects_bad_files(tmp_path, content, match):
  path = tmp_path / 'bad.json'
  path.write_text(json.dumps(content))
  with pytest.raises(frontend.FrontendError, match=match):
    frontend.load_stats(str(path))


AUG = dict(num_freq_masks=2, freq_mask_width=6, num_time_masks=3, time_mask_max_ratio=0.1)


def _runs(row):
  """Lengths of the runs of True in a 1-D boolean array."""
  runs, current = [], 0
  for value in list(row) + [False]:
    if value:
      current += 1
    elif current:
      runs.append(current)
      current = 0
  return runs


def test_spec_augment_masks_respect_counts_widths_and_padding():
  batch, frames, mels = 16, 60, 20
  lengths = np.linspace(10, frames, batch).astype(int)
  paddings = (np.arange(frames)[None] >= lengths[:, None]).astype(np.float32)
  feats = jnp.ones((batch, frames, mels))
  augment = jax.jit(functools.partial(frontend.spec_augment, **AUG))
  saw_time, saw_freq = False, False
  for seed in range(5):
    key = jax.random.PRNGKey(seed)
    out = np.asarray(augment(key, feats, paddings))
    time_mask, freq_mask = map(np.asarray, frontend.spec_augment_masks(key, paddings, mels, **AUG))
    for b in range(batch):
      valid = paddings[b] < 0.5
      # Masked cells are exactly the union of masked frames and masked bins, on valid frames.
      expected = (time_mask[b][:, None] | freq_mask[b][None, :]) & valid[:, None]
      np.testing.assert_array_equal(out[b] == 0, expected)
      assert not time_mask[b][~valid].any()
      max_tw = int(np.floor(np.float32(AUG['time_mask_max_ratio']) * np.float32(lengths[b])))
      runs = _runs(time_mask[b])
      assert len(runs) <= AUG['num_time_masks'] and sum(runs) <= AUG['num_time_masks'] * max_tw
      runs = _runs(freq_mask[b])
      assert len(runs) <= AUG['num_freq_masks']
      assert sum(runs) <= AUG['num_freq_masks'] * AUG['freq_mask_width']
      saw_time |= time_mask[b].any()
      saw_freq |= freq_mask[b].any()
  assert saw_time and saw_freq     # the masks are not always empty


def test_spec_augment_is_deterministic_per_key():
  feats = jnp.asarray(np.random.default_rng(5).normal(size=(4, 50, 20)), jnp.float32)
  paddings = jnp.zeros((4, 50))
  a = frontend.spec_augment(jax.random.PRNGKey(7), feats, paddings, **AUG)
  b = frontend.spec_augment(jax.random.PRNGKey(7), feats, paddings, **AUG)
  c = frontend.spec_augment(jax.random.PRNGKey(8), feats, paddings, **AUG)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
