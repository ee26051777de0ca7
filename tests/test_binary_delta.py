"""Tests for diffs.binary_delta, the generic binary-delta baseline: bit-exact round trips, sizes
against numbers computed here with the libraries directly, refusals of another base and of
damaged payloads, and the baseline's place in the chain's records, the table and the CLI."""
import csv
import hashlib
import io
import json
import os

import bsdiff4
import ml_collections
import numpy as np
import pytest
import zstandard

from diffs import binary_delta as B
from diffs import chain
from diffs import cli
from diffs import package as P


def make_params(seed=0):
  """Nested dicts of float32 arrays shaped like a small flax model's params."""
  rng = np.random.default_rng(seed)
  f32 = lambda *s: rng.normal(0, 0.05, s).astype(np.float32)
  return {'encoder': {'lstm_0': {'kernel': f32(256, 512), 'bias': f32(512)},
                      'lstm_1': {'kernel': f32(128, 256), 'bias': f32(256)}},
          'joint': {'dense': {'kernel': f32(96, 64), 'bias': f32(64)}}}


def change(params, fraction, seed=1):
  """A copy with `fraction` of the entries of every leaf moved by a small random step."""
  rng = np.random.default_rng(seed)
  out = {}
  for path, leaf in P.flatten(params).items():
    leaf = leaf.copy()
    picked = rng.random(leaf.shape) < fraction
    leaf[picked] += rng.normal(0, 1e-3, int(picked.sum())).astype(np.float32)
    out[path] = leaf
  return P.unflatten(out)


def npz_bytes(params) -> bytes:
  """The device's params file, written here with numpy directly."""
  buffer = io.BytesIO()
  np.savez(buffer, **P.flatten(params))
  return buffer.getvalue()


def zstd_plain(data: bytes) -> int:
  return len(zstandard.ZstdCompressor(level=B.LEVEL).compress(data))


def bits(params) -> dict:
  return {path: (leaf.dtype, leaf.shape, np.asarray(leaf).tobytes())
          for path, leaf in P.flatten(params).items()}


@pytest.fixture(scope='module')
def base():
  return make_params()


def test_serialize_is_the_params_file_the_device_holds(base, tmp_path):
  P.save_params(tmp_path / 'device.npz', base)
  data = B.serialize(base)
  assert data == (tmp_path / 'device.npz').read_bytes() == npz_bytes(base)
  assert B.serialize(make_params()) == data             # a function of the params alone
  leaves = P.flatten(base).values()
  raw = sum(leaf.nbytes for leaf in leaves)
  assert raw < len(data) < raw + 400 * len(leaves)      # float32 values plus member headers


def test_round_trip_is_bit_identical(base):
  new = change(base, 0.3)
  special = np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-40, 3.4e38], np.float32)
  nan = np.array([0x7fc00001, 0xffbfffff], np.uint32).view(np.float32)   # payload and sign bits
  new['joint']['dense']['bias'][:9] = np.concatenate([special, nan])
  new['joint']['step'] = np.int32(7)                    # a non-float leaf keeps its dtype
  back = B.decode(base, B.encode(base, new))
  assert bits(back) == bits(new)
  assert back.keys() == new.keys() and back['encoder'].keys() == new['encoder'].keys()
  assert B.decode(base, B.encode(base, base)).keys() == base.keys()


def test_a_sparse_change_costs_a_small_fraction_of_the_model(base):
  new = change(base, 0.01)
  changed = sum(int((a != b).sum()) for a, b in zip(P.flatten(new).values(),
                                                    P.flatten(base).values()))
  base_file, new_file = npz_bytes(base), npz_bytes(new)
  plain = zstd_plain(new_file)
  patch = bsdiff4.diff(base_file, new_file)
  assert bsdiff4.patch(base_file, patch) == new_file
  sizes = B.sizes(base, new)
  assert sizes['raw_bytes'] == len(new_file)
  assert sizes['bsdiff4_bytes'] == len(patch)
  assert sizes['zstd_bytes'] == pytest.approx(plain, rel=0.02)   # same level, its own window
  assert sizes['binary_delta_bytes'] == len(B.encode(base, new))
  delta = sizes['binary_delta_bytes']
  assert delta < 0.03 * plain and delta < 0.03 * len(new_file)
  assert delta > 2 * changed        # a changed float costs its changed bytes and a position
  assert len(patch) < 0.03 * len(new_file)


def test_a_change_in_every_entry_costs_nearly_the_raw_file(base):
  """The honest case: fine-tuning moves every weight's low-order bits, so there is little for a
  byte-level delta to match."""
  rng = np.random.default_rng(2)
  new = P.unflatten({p: leaf * (1 + rng.normal(0, 1e-3, leaf.shape)).astype(np.float32)
                     for p, leaf in P.flatten(base).items()})
  assert all((a != b).mean() > 0.99 for a, b in zip(P.flatten(new).values(),
                                                    P.flatten(base).values()))
  payload = B.encode(base, new)
  new_file = npz_bytes(new)
  assert len(payload) > 0.9 * len(new_file)
  assert len(payload) > 0.97 * zstd_plain(new_file)    # the base as dictionary barely helps
  assert bits(B.decode(base, payload)) == bits(new)


def test_decoding_against_another_base_is_refused(base):
  payload = B.encode(base, change(base, 0.01))
  other = change(base, 0.0)
  other['encoder']['lstm_1']['bias'][3] = np.nextafter(other['encoder']['lstm_1']['bias'][3],
                                                       np.float32(1))   # one ulp of one entry
  made_for = hashlib.sha256(npz_bytes(base)).hexdigest()[:16]
  given = hashlib.sha256(npz_bytes(other)).hexdigest()[:16]
  with pytest.raises(B.BinaryDeltaError) as error:
    B.decode(other, payload, name='update_3.bdz')
  assert str(error.value) == (f'update_3.bdz: made for base {made_for}, given base {given}; '
                              'decode with the model it was encoded against')


def _flip(data: bytes, at: int) -> bytes:
  return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:]


@pytest.mark.parametrize('damage, message', [
    (lambda p: b'', 'truncated \\(0 bytes'),
    (lambda p: p[:40], 'truncated \\(40 bytes, the header is 82\\)'),
    (lambda p: p[:90], 'corrupt or truncated: '),
    (lambda p: p[:len(p) // 2], 'corrupt or truncated: '),
    (lambda p: p[:-1], 'corrupt or truncated: '),
    (lambda p: p + b'\0', 'corrupt or truncated: zstd frame is incomplete or followed by junk'),
    (lambda p: _flip(p, 0), 'not a binary delta \\(bad magic\\)'),
    (lambda p: _flip(p, 8), 'unknown version 17'),
    (lambda p: _flip(p, 10), 'made for base'),
    (lambda p: _flip(p, 50), 'corrupt or truncated: the decoded file fails its sha256 '),
    (lambda p: _flip(p, 74), 'corrupt or truncated: zstd frame does not hold the'),
    (lambda p: _flip(p, len(p) // 2), 'corrupt or truncated: '),
])
def test_a_damaged_payload_is_refused_in_one_line(base, damage, message):
  payload = B.encode(base, change(base, 0.01))
  with pytest.raises(B.BinaryDeltaError, match='^update_3.bdz: ' + message) as error:
    B.decode(base, damage(payload), name='update_3.bdz')
  assert '\n' not in str(error.value)


def test_the_chain_records_the_baseline_of_each_update(base, tmp_path, monkeypatch):
  """A finished update from before the baseline existed gets it on resume, once; it is the
  baseline of the step from the params the update started from to the ones it produced."""
  new = change(base, 0.05)
  workdir = tmp_path / 'update_1'
  workdir.mkdir()
  P.save_params(workdir / 'device.npz', new)
  (workdir / 'update.json').write_text(json.dumps({'bytes': 1234, 'stored_values': 5}))
  cfg = ml_collections.ConfigDict({'diffs': {}, 'train': {'lr': 1e-3}})
  run = lambda: chain.run_update(cfg, str(workdir), None, 'full', base, None, None, '', 1)
  info = run()
  expected = B.sizes(base, new)
  assert info['binary_delta'] == expected and info['bytes'] == 1234
  assert bits(info['params']) == bits(new)
  record = json.loads((workdir / 'update.json').read_text())
  assert record['binary_delta'] == expected
  # a record from before rates were recorded reads as the config's rate, and is not given one
  assert info['lr'] == 1e-3 and 'lr' not in record

  def no_recompute(*_):
    raise AssertionError('recorded sizes are read back')
  monkeypatch.setattr(B, 'sizes', no_recompute)
  assert run()['binary_delta'] == expected


def test_the_table_shows_the_baseline_beside_the_package(tmp_path):
  from experiments import diffs_experiment  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict({
      'data': {'corpus': 'tiny'},
      'diffs': {'value_dtype': 'fp16', 'eval_split': 'test', 'eval_utterances': 0,
                'updates': 1, 'steps_per_update': 2, 'replay_fraction': 0.5}})
  scores = {'wer_new': 30.0, 'cer_new': 10.0, 'wer_base': 20.0, 'cer_base': 5.0}
  rows = [{'method': 'base model', 'budget': '-', 'update': 0, 'bytes': 1000, 'pct_full': 100.0,
           **scores},
          {'method': 'sparse', 'budget': '10%', 'update': 1, 'bytes': 100, 'pct_full': 10.0,
           'binary_delta_bytes': 150, 'bsdiff4_bytes': 140, **scores},
          {'method': 'full', 'budget': 'all', 'update': 1, 'bytes': 1000, 'pct_full': 100.0,
           'binary_delta_bytes': 1900, 'bsdiff4_bytes': 1700, **scores}]
  diffs_experiment.write(rows, cfg, str(tmp_path), 1.0)
  table = list(csv.DictReader(open(tmp_path / 'diffs_table.csv')))
  assert [(r['method'], r['bytes'], r['binary_delta_bytes'], r['bsdiff4_bytes'])
          for r in table] == [('base model', '1000', '', ''), ('sparse', '100', '150', '140'),
                              ('full', '1000', '1900', '1700')]
  text = (tmp_path / 'diffs_table.md').read_text()
  assert '| package bytes | % of full | binary delta bytes | bsdiff4 bytes |' in text
  assert (tmp_path / 'diffs_wer_vs_bytes.png').stat().st_size > 1000
  assert not (tmp_path / 'lr_choice_test.md').exists()       # one rate per method: no choice
  # a grid: sparse at two rates; the lower WER's is chosen, in a table named for the split
  cfg.diffs.eval_split = 'test_seen'
  rows[1]['lr'], rows[2]['lr'] = 1e-2, 3e-3
  rows.insert(2, dict(rows[1], lr=3e-2, wer_new=25.0))
  diffs_experiment.write(rows, cfg, str(tmp_path), 1.0)
  choice = list(csv.DictReader(open(tmp_path / 'lr_choice_test_seen.csv')))
  assert [(r['method'], r['lr'], r['mean_wer_new'], r['chosen']) for r in choice] == [
      ('sparse', '0.01', '30.0', ''), ('sparse', '0.03', '25.0', 'yes')]


def test_cli_prints_the_sizes_of_two_models(base, tmp_path, capsys):
  new = change(base, 0.01)
  P.save_params(tmp_path / 'old.npz', base)
  P.save_params(tmp_path / 'new.npz', new)
  assert cli.main(['binary-delta', str(tmp_path / 'old.npz'), str(tmp_path / 'new.npz')]) == 0
  sizes = B.sizes(base, new)
  out = capsys.readouterr().out
  assert out.startswith(f'{tmp_path / "new.npz"} from {tmp_path / "old.npz"}: raw '
                        f'{sizes["raw_bytes"]} bytes (100.00%), zstd {sizes["zstd_bytes"]} bytes')
  assert f'binary_delta {sizes["binary_delta_bytes"]} bytes' in out
  assert f'bsdiff4 {sizes["bsdiff4_bytes"]} bytes' in out
  assert cli.main(['binary-delta', str(tmp_path / 'missing.npz'), str(tmp_path / 'new.npz')]) == 1
  assert 'missing.npz: cannot read params' in capsys.readouterr().err
