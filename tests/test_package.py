"""Tests for diffs.package: exact round trips, index coding, refusals, fuzzing, atomic files."""
import hashlib
import json
import os
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest

from diffs import cli
from diffs import delta as D
from diffs import package as P
from asr import sparsity

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_base(seed=0, scale=1):
  rng = np.random.default_rng(seed)
  f32 = lambda *s: rng.normal(size=s).astype(np.float32)
  return {'encoder': {'kernel': f32(10 * scale, 8), 'bias': f32(8),
                      'half': rng.normal(size=(4, 6)).astype(np.float16)},
          'joint': {'w': f32(8, 5), 'scale': np.float32(0.5), 'step': np.int32(7)}}


def flat(tree):
  return {p: np.asarray(v) for p, v in P.flatten(tree).items()}


def assert_same(got, want):
  got, want = flat(got), flat(want)
  assert sorted(got) == sorted(want)
  for path in want:
    assert got[path].dtype == want[path].dtype and got[path].shape == want[path].shape, path
    assert got[path].tobytes() == want[path].tobytes(), path


def frozen_copy(tree):
  """Read-only copies: any in-place write by the code under test raises."""
  def freeze(x):
    x = np.array(x, copy=True)
    x.flags.writeable = False
    return x
  return {k: frozen_copy(v) if isinstance(v, dict) else freeze(v) for k, v in tree.items()}


def trained_diff(method, base, seed=1):
  """(trainable, fixed) of each method with random values, as training would leave them."""
  rng = np.random.default_rng(seed)
  noise = lambda t: jax.numpy.asarray((0.1 * rng.normal(size=t.shape)).astype(np.float32))
  budget = {'sparse': None, 'hashed': 30, 'lowrank': 90, 'full': None}[method]
  trainable, fixed = D.init(method, base, budget)
  trainable = jax.tree.map(noise, trainable)
  if method == 'sparse':
    trainable, fixed = sparsity.reprune(trainable, fixed, 0.2)
  return trainable, fixed


def resign(data: bytes) -> bytes:
  """Recomputes the checksum: models a writer bug rather than transmission damage."""
  return data[:-32] + hashlib.sha256(data[:-32]).digest()


def split(data: bytes):
  header_len = struct.unpack_from('<I', data, 10)[0]
  header = json.loads(data[14:14 + header_len])
  body = data[14 + header_len + 8:-32]
  return header, body


def rebuild(header, body, version=P.FORMAT_VERSION, sort_keys=True):
  return P._container(version, json.dumps(header, sort_keys=sort_keys).encode(), body)


# ------------------------------------------------------------------ fingerprint and codecs

def reference_fingerprint(flat_params):
  digest = hashlib.sha256(b'ndiff-fingerprint-v1\0')
  for path in sorted(flat_params):
    a = np.asarray(flat_params[path])
    for text in (path, a.dtype.name):
      digest.update(len(text).to_bytes(4, 'little') + text.encode())
    digest.update(a.ndim.to_bytes(4, 'little') + b''.join(d.to_bytes(8, 'little') for d in a.shape))
    raw = a.astype(a.dtype.newbyteorder('<')).tobytes()
    digest.update(len(raw).to_bytes(8, 'little') + raw)
  return digest.hexdigest()


def test_fingerprint_is_canonical_and_sensitive():
  base = make_base()
  fp = P.fingerprint(base)
  assert fp == reference_fingerprint(flat(base))
  reordered = {'joint': dict(reversed(list(base['joint'].items()))), 'encoder': base['encoder']}
  assert P.fingerprint(reordered) == fp
  assert P.fingerprint(jax.tree.map(jax.numpy.asarray, {'a': base['encoder']['kernel']})) == \
      P.fingerprint({'a': base['encoder']['kernel']})
  big_endian = base['encoder']['kernel'].astype('>f4')
  assert P.fingerprint({'a': big_endian}) == P.fingerprint({'a': base['encoder']['kernel']})
  variants = [
      {**base, 'joint': {**base['joint'], 'scale': np.float32(0.5000001)}},
      {**base, 'joint': {**base['joint'], 'scale': np.float64(0.5)}},
      {**base, 'joint': {**base['joint'], 'scale': np.array([0.5], np.float32)}},
      {**base, 'joint': {**base['joint'], 'scale2': base['joint']['scale']}},
  ]
  del variants[3]['joint']['scale']
  assert len({P.fingerprint(v) for v in variants} | {fp}) == 5


def reference_leb128(value):
  out = bytearray()
  while True:
    byte, value = value & 0x7f, value >> 7
    out.append(byte | (0x80 if value else 0))
    if not value:
      return bytes(out)


def test_varint_codec_matches_reference_and_rejects_bad_streams():
  rng = np.random.default_rng(0)
  values = np.concatenate([[0, 1, 127, 128, 16383, 16384, 2**35 - 1],
                           rng.integers(0, 2**20, 200)])
  data = P.varint_encode(values)
  assert data == b''.join(reference_leb128(int(v)) for v in values)
  np.testing.assert_array_equal(P.varint_decode(data, values.size), values)
  bad_streams = [(b'\x80', 1, 'mid-number'), (b'\x01\x02', 1, '2 index varints'),
                 (b'\x80\x00', 1, 'non-canonical'), (b'\xff' * 5 + b'\x01', 1, 'too long'),
                 (b'', 1, 'no index')]
  for bad, count, message in bad_streams:
    with pytest.raises(ValueError, match=message):
      P.varint_decode(bad, count)
  with pytest.raises(ValueError):
    P.varint_encode([2**35])


def test_int8_and_fp16_quantization():
  rng = np.random.default_rng(0)
  values = rng.normal(size=1000).astype(np.float32)
  data, scale = P.quantize(values, 'int8')
  assert len(data) == 1000 and scale == np.float32(np.abs(values).max() / np.float32(127))
  decoded = P.roundtrip(values, 'int8')
  assert np.abs(decoded - values).max() <= scale / 2 * 1.0001
  assert np.abs(decoded).max() == np.abs(values).max() or np.isclose(np.abs(decoded).max(),
                                                                     np.abs(values).max())
  np.testing.assert_array_equal(P.roundtrip(values, 'fp16'), values.astype(np.float16))
  np.testing.assert_array_equal(P.roundtrip(np.zeros(3), 'int8'), 0)
  with pytest.raises(ValueError, match='overflows fp16'):
    P.quantize([1e5], 'fp16')


# ------------------------------------------------------------------ round trips

@pytest.mark.parametrize('method', P.METHODS)
@pytest.mark.parametrize('value_dtype,compression', [('fp16', 'zlib'), ('int8', 'lzma'),
                                                     ('fp16', 'none')])
def test_round_trip_is_exact(tmp_path, method, value_dtype, compression):
  base = make_base()
  trainable, fixed = trained_diff(method, base)
  payload = D.to_payload(method, trainable, fixed, base)
  target = D.materialize(method, trainable, fixed, base)
  path = tmp_path / 'update.ndiff'
  info = P.export(path, method, payload, base, result_params=target, value_dtype=value_dtype,
                  compression=compression)
  assert info['bytes'] == os.path.getsize(path)
  assert info['stored_values'] == D.count_payload(method, trainable, fixed)
  frozen = frozen_copy(base)
  applied = P.apply(path, frozen)
  assert_same(frozen, base)                       # base untouched
  assert_same(applied, info['params'])            # export reports exactly what apply makes
  assert P.fingerprint(applied) == info['result_fingerprint']
  # The training side, materializing the quantized values, lands on the same bits (low-rank:
  # the same values up to float32 matmul rounding).
  trained = D.materialize(method, D.quantized(method, trainable, fixed, base, value_dtype), fixed,
                          base)
  if method == 'lowrank':
    for p, v in flat(trained).items():
      np.testing.assert_allclose(flat(applied)[p], v, rtol=1e-6, atol=1e-6)
  else:
    assert_same(trained, applied)
  bound = 2e-3 if value_dtype == 'fp16' else 5e-3
  assert 0 < info['max_abs_error'] < bound        # quantization error vs the unquantized target


def test_lowrank_product_is_the_float64_product():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(7, 3)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)
  exact = sum(np.outer(a[:, j].astype(np.float64), b[j].astype(np.float64)) for j in range(3))
  np.testing.assert_array_equal(P._lowrank_product(a, b), exact.astype(np.float32))


def test_index_coding_picks_the_smaller(tmp_path):
  rng = np.random.default_rng(0)
  base = {'dense_ish': rng.normal(size=(40, 50)).astype(np.float32),
          'very_sparse': rng.normal(size=(40, 50)).astype(np.float32)}
  payload = {}
  for name, density in (('dense_ish', 0.5), ('very_sparse', 0.005)):
    indices = np.sort(rng.choice(2000, int(2000 * density), replace=False))
    payload[name] = {'indices': indices, 'values': rng.normal(size=indices.size)}
  info = P.export(tmp_path / 'u', 'sparse', payload, base)
  leaves = {leaf['path']: leaf for leaf in P.inspect(tmp_path / 'u')['leaves']}
  assert leaves['dense_ish']['index_coding'] == 'bitmap'
  assert leaves['very_sparse']['index_coding'] == 'varint'
  # bitmap: 250 bytes for 2000 entries; varints: ~1 byte per index at gaps < 128 is more here
  assert leaves['dense_ish']['raw_bytes'] == 250 + 2 * 1000
  for name in payload:
    expected = base[name].ravel().copy()
    expected[payload[name]['indices']] += payload[name]['values'].astype(np.float16)
    np.testing.assert_array_equal(info['params'][name].ravel(), expected)


# ------------------------------------------------------------------ refusals

@pytest.fixture
def package_file(tmp_path):
  base = make_base()
  trainable, fixed = trained_diff('sparse', base)
  path = tmp_path / 'update.ndiff'
  payload = D.to_payload('sparse', trainable, fixed, base)
  info = P.export(path, 'sparse', payload, base)
  info['payload_paths'] = set(payload)
  return path, base, info


def refused(path, base, match):
  frozen = frozen_copy(base)
  with pytest.raises(P.PackageError, match=match) as error:
    P.apply(path, frozen)
  message = str(error.value)
  assert str(path) in message and '\n' not in message
  assert_same(frozen, base)
  return message


def test_refusals_name_the_file_and_the_problem(package_file, tmp_path):
  path, base, info = package_file
  data = path.read_bytes()
  other = make_base(seed=5)
  refused(path, other, 'package is for base ' + info['base_fingerprint'][:16] + ', device has '
          + P.fingerprint(other)[:16])
  cases = {
      'version': (P._container(7, *(lambda h, b: (json.dumps(h).encode(), b))(*split(data))),
                  'unknown format version 7'),
      'truncated': (data[:-40], 'truncated'),
      'truncated_header': (data[:12], 'truncated'),
      'corrupted': (data[:200] + bytes([data[200] ^ 0x10]) + data[201:], 'checksum mismatch'),
      'extended': (data + b'\0', '1 unexpected bytes'),
      'magic': (b'PK' + data[2:], 'bad magic'),
      'empty': (b'', 'truncated'),
  }
  for name, (content, match) in cases.items():
    bad = tmp_path / name
    bad.write_bytes(content)
    refused(bad, base, match)
  refused(tmp_path / 'missing', base, 'cannot read package')


def test_header_checks_after_a_valid_checksum(package_file):
  path, base, _ = package_file
  leaf = lambda h, p: next(e for e in h['leaves'] if e['path'] == p)
  header, body = split(path.read_bytes())
  mutations = {
      'result_fingerprint': ('result fingerprint', lambda h: h.update(
          result_fingerprint=h['base_fingerprint'])),
      'shape': (r'is float32\[8, 10\] in the package, float32\[10, 8\] in the base',
                lambda h: leaf(h, 'encoder/kernel').update(shape=[8, 10])),
      'path': ('not in the base', lambda h: h['leaves'][0].update(path='encoder/nope')),
      'kind': ('malformed header', lambda h: h['leaves'][0].update(kind='sparse2')),
      'nnz': ('malformed header', lambda h: h.update(stored_values=h['stored_values'] + 1)),
      'unknown_field': ('malformed header', lambda h: h.update(extra=1)),
      'hash': ('unknown hash', lambda h: h.update(hash='md5')),
      'value_dtype': ('malformed header', lambda h: h.update(value_dtype='int8')),
      'compression': ('corrupt body', lambda h: h.update(compression='lzma')),
      'drop_leaf': ('malformed header', lambda h: h['leaves'].pop()),
  }
  for name, (match, mutate) in mutations.items():
    h = json.loads(json.dumps(header))
    mutate(h)
    with pytest.raises(P.PackageError, match=match):
      P.apply_bytes(rebuild(h, body), base)
  # Reordered JSON keys and a changed informational field are harmless: same params.
  h = json.loads(json.dumps(header))
  h['meta'] = {'note': 'x'}
  assert_same(P.apply_bytes(rebuild(h, body, sort_keys=False), base), P.apply(path, base))


# ------------------------------------------------------------------ fuzzing

# FUZZ_SCALE=4 runs >= 12,000 cases (README); CI runs the default ~3,000.
FUZZ_SCALE = int(os.environ.get('FUZZ_SCALE', '1'))


def fuzz_cases(data, rng):
  """(label, bytes): raw damage (flips, truncation, extension) and damage re-signed with a valid
  checksum, which reaches the header and body decoders."""
  n = len(data)
  for _ in range(250 * FUZZ_SCALE):
    damaged = bytearray(data)
    for position in rng.integers(0, n, rng.integers(1, 4)):
      damaged[position] ^= int(rng.integers(1, 256))
    yield 'flip', bytes(damaged)
  for cut in rng.integers(0, n, 40 * FUZZ_SCALE):
    yield 'truncate', data[:cut]
  for extra in rng.integers(1, 50, 20 * FUZZ_SCALE):
    yield 'extend', data + rng.bytes(int(extra))
  for _ in range(400 * FUZZ_SCALE):
    damaged = bytearray(data)
    for position in rng.integers(0, n - 32, rng.integers(1, 3)):
      damaged[position] ^= 1 << int(rng.integers(0, 8))
    yield 'resigned', resign(bytes(damaged))
  header, body = split(data)
  for _ in range(40 * FUZZ_SCALE):   # swapped header fields, valid checksum
    h = json.loads(json.dumps(header))
    leaves = h['leaves']
    i, j = rng.integers(0, len(leaves), 2)
    key = ['shape', 'path', 'kind', 'dtype'][int(rng.integers(0, 4))]
    choice = int(rng.integers(0, 4))
    if choice == 0:
      leaves[i][key], leaves[j][key] = leaves[j][key], leaves[i][key]
    elif choice == 1:
      leaves[i], leaves[j] = leaves[j], leaves[i]
    elif choice == 2:
      h['base_fingerprint'], h['result_fingerprint'] = (h['result_fingerprint'],
                                                         h['base_fingerprint'])
    else:
      names = [k for k in leaves[i] if isinstance(leaves[i][k], int)]
      if names:
        leaves[i][names[0]] += int(rng.integers(-2, 3))
    yield 'swapped', rebuild(h, body)


REASONS = [('checksum mismatch', 'checksum'), ('bad magic', 'magic'),
           ('unknown format version', 'version'), ('truncated', 'truncated'),
           ('unexpected bytes after the checksum', 'trailing'), ('malformed header', 'header'),
           ('package is for base', 'base'), ('corrupt body', 'body'),
           ('result fingerprint', 'result'), ('in the package,', 'leaf'),
           ('not in the base', 'leaf'), ('non-float', 'leaf'), ("fuzz: leaf '", 'leaf data')]


def reason(message):
  assert message.startswith('fuzz: ') and '\n' not in message
  return next((name for text, name in REASONS if text in message), 'other')


def test_fuzz_never_yields_wrong_params():
  rng = np.random.default_rng(1234)
  base = make_base()
  outcomes = {}
  total = 0
  for method, value_dtype, compression in [('sparse', 'fp16', 'none'), ('hashed', 'int8', 'zlib'),
                                           ('lowrank', 'fp16', 'none'), ('full', 'int8', 'lzma')]:
    trainable, fixed = trained_diff(method, base)
    data, expected = P.encode(method, D.to_payload(method, trainable, fixed, base), base,
                              value_dtype, compression)
    frozen = frozen_copy(base)
    for label, damaged in fuzz_cases(data, rng):
      total += 1
      try:
        result = P.apply_bytes(damaged, frozen, name='fuzz')
      except P.PackageError as e:
        outcomes.setdefault(label, set()).add(reason(str(e)))
        continue
      assert damaged == data or label in ('swapped', 'resigned')
      assert_same(result, expected)                # harmless damage: exactly the right params
      outcomes.setdefault(label, set()).add('harmless')
    assert_same(frozen, base)
  assert total >= 2000
  # raw damage is caught by the framing or the checksum; re-signed damage by the decoder
  assert outcomes['flip'] <= {'checksum', 'magic', 'version', 'truncated', 'trailing'}
  assert outcomes['truncate'] <= {'truncated', 'magic'}
  assert outcomes['extend'] == {'trailing'}
  assert 'checksum' not in outcomes['resigned'] | outcomes['swapped']
  assert {'header', 'body', 'result'} <= outcomes['resigned']
  assert 'other' not in set().union(*outcomes.values())


# ------------------------------------------------------------------ files and device side

def test_apply_file_is_atomic(package_file, tmp_path, monkeypatch):
  path, base, info = package_file
  params = tmp_path / 'model.npz'
  P.save_params(params, base)
  assert P.apply_file(path, params, tmp_path / 'new.npz') == info['result_fingerprint']
  assert_same(P.load_params(tmp_path / 'new.npz'), info['params'])
  before = params.read_bytes()
  with pytest.raises(P.PackageError):              # package for another base: file untouched
    P.apply_file(path, tmp_path / 'new.npz', tmp_path / 'new.npz')

  def crash(*args):
    raise OSError('power cut')
  monkeypatch.setattr(os, 'replace', crash)
  with pytest.raises(OSError, match='power cut'):
    P.apply_file(path, params, params)
  monkeypatch.undo()
  assert params.read_bytes() == before
  assert sorted(p.name for p in tmp_path.iterdir()) == ['model.npz', 'new.npz', 'update.ndiff']
  P.apply_file(path, params, params)               # in place
  assert P.fingerprint(P.load_params(params)) == info['result_fingerprint']
  (tmp_path / 'junk.npz').write_bytes(b'not a zip')
  with pytest.raises(P.PackageError, match='junk.npz: not a params'):
    P.load_params(tmp_path / 'junk.npz')


def test_package_applies_without_jax(package_file, tmp_path):
  path, base, info = package_file
  P.save_params(tmp_path / 'model.npz', base)
  script = ('import sys; sys.modules["jax"] = None; sys.modules["jaxlib"] = None\n'
            'from diffs import cli, package\n'
            f'sys.exit(cli.main(["apply", "{path}", "--params", "{tmp_path / "model.npz"}"]))')
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert info['result_fingerprint'] in result.stdout
  assert_same(P.load_params(tmp_path / 'model.npz'), info['params'])


def test_inspect_and_cli(package_file, capsys):
  path, base, info = package_file
  summary = P.inspect(path)
  assert summary['method'] == 'sparse' and summary['bytes'] == info['bytes']
  assert summary['base_fingerprint'] == info['base_fingerprint']
  assert summary['stored_values'] == sum(leaf['stored_values'] for leaf in summary['leaves'])
  assert summary['header_bytes'] + summary['body_bytes'] + 14 + 8 + 32 == summary['bytes']
  assert {leaf['path'] for leaf in summary['leaves']} == info['payload_paths']
  assert {'encoder/kernel', 'joint/w'} <= info['payload_paths']
  assert cli.main(['inspect', str(path)]) == 0
  assert 'encoder/kernel' in capsys.readouterr().out
  params = path.parent / 'other.npz'
  P.save_params(params, make_base(seed=3))
  before = params.read_bytes()
  assert cli.main(['apply', str(path), '--params', str(params)]) == 1
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'package is for base' in err
  assert params.read_bytes() == before


def test_full_model_bytes_and_budgeted_sizes(tmp_path):
  base = make_base(scale=50)                       # ~4,000 float32 parameters
  n = sum(np.size(v) for p, v in flat(base).items() if p != 'joint/step')
  full16, full8 = P.full_model_bytes(base, 'fp16'), P.full_model_bytes(base, 'int8')
  assert 1.7 * n < full16 < 2.3 * n + 1000 and full8 < 0.7 * full16
  trainable, masks = D.init_sparse(base)
  trainable = jax.tree.map(lambda t: t + 1.0, trainable)
  budget = D.budget_from_fraction(base, 0.1)
  trainable, masks = sparsity.reprune(trainable, masks, D.sparse_density(trainable, budget))
  info = P.export(tmp_path / 'u', 'sparse', D.to_payload('sparse', trainable, masks, base), base)
  assert info['stored_values'] == budget
  assert info['bytes'] < 0.2 * full16


def test_export_rejects_bad_payloads(tmp_path):
  base = make_base()
  bad = [
      ({'encoder/kernel': {'indices': [0, 80], 'values': [1, 2]}}, r'in \[0, 80\)'),
      ({'encoder/kernel': {'indices': [3, 3], 'values': [1, 2]}}, 'distinct'),
      ({'encoder/kernel': {'indices': [3], 'values': [1e6]}}, 'overflows fp16'),
      ({'encoder/kernel': {'kind': 'bogus'}}, 'unknown kind'),
      ({'encoder/nope': {'values': np.zeros(3)}}, 'not in the base'),
      ({'joint/step': {'kind': 'full', 'values': np.zeros(())}}, 'non-float'),
      ({'encoder/bias': {'kind': 'lowrank', 'a': np.zeros((8, 1)), 'b': np.zeros((1, 1))}},
       'ndim >= 2'),
      ({'encoder/kernel': {'kind': 'full', 'values': np.zeros((8, 10))}}, 'shape'),
  ]
  for payload, match in bad:
    with pytest.raises(ValueError, match=match):
      P.export(tmp_path / 'u', 'sparse', payload, base)
  assert not list(tmp_path.iterdir())              # nothing written on failure
