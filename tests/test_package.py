"""Tests for diffs.package: exact round trips, index coding, refusals, fuzzing (with and without
the signing key), the device-side command line."""
import hashlib
import json
import os
import struct
import subprocess
import sys
import time

from cryptography.hazmat.primitives.asymmetric import ed25519
import jax
import numpy as np
import pytest

from diffs import cli
from diffs import delta as D
from diffs import package as P
from diffs import signing as S
from asr import sparsity

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The maker's key and an attacker's, made for these tests only.
KEY = ed25519.Ed25519PrivateKey.generate()
TRUSTED = [S.public_bytes(KEY)]
ATTACKER = ed25519.Ed25519PrivateKey.generate()


def export(path, method, payload, base, update=1, **kwargs):
  return P.export(path, method, payload, base, key=KEY, update=update, **kwargs)


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


def unsign(data: bytes) -> bytes:
  """The container (everything before the 104-byte signature trailer) of a signed package."""
  assert data[-S.TRAILER_BYTES:-S.TRAILER_BYTES + 8] == b'\x89NDSIG\r\n'
  return data[:-S.TRAILER_BYTES]


def fix_checksum(container: bytes) -> bytes:
  """Recomputes the checksum of a container: a writer bug, or an attacker covering a change."""
  return container[:-32] + hashlib.sha256(container[:-32]).digest()


def split(data: bytes):
  """(header, body) of a signed package, read by hand."""
  container = unsign(data)
  header_len = struct.unpack_from('<I', container, 10)[0]
  header = json.loads(container[14:14 + header_len])
  body = container[14 + header_len + 8:-32]
  return header, body


def rebuild(header, body, version=P.FORMAT_VERSION, sort_keys=True, key=KEY):
  """A container from header and body with a valid checksum, signed by `key` (None: unsigned)."""
  container = P._container(version, json.dumps(header, sort_keys=sort_keys).encode(), body)
  return container if key is None else P.sign(container, key)


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
  info = export(path, method, payload, base, result_params=target, value_dtype=value_dtype,
                compression=compression)
  assert info['bytes'] == os.path.getsize(path)
  assert info['stored_values'] == D.count_payload(method, trainable, fixed)
  frozen = frozen_copy(base)
  applied = P.apply(path, frozen, trusted=TRUSTED)
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
  info = export(tmp_path / 'u', 'sparse', payload, base)
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
  info = export(path, 'sparse', payload, base)
  info['payload_paths'] = set(payload)
  return path, base, info


def refused(path, base, match, trusted=TRUSTED):
  frozen = frozen_copy(base)
  with pytest.raises(P.PackageError, match=match) as error:
    P.apply(path, frozen, trusted=trusted)
  message = str(error.value)
  assert str(path) in message and '\n' not in message
  assert_same(frozen, base)
  return message


def test_refusals_name_the_file_and_the_problem(package_file, tmp_path):
  path, base, info = package_file
  data = path.read_bytes()
  container = unsign(data)
  other = make_base(seed=5)
  refused(path, other, 'package is for base ' + info['base_fingerprint'][:16] + ', device has '
          + P.fingerprint(other)[:16])
  trailer = data[-S.TRAILER_BYTES:]
  # What reaches a device: refused by the signature before anything else is read.
  unsigned = 'not signed'
  cases = {
      'unsigned': (container, unsigned),
      'truncated_signature': (data[:-1], unsigned),
      'half_signature': (data[:-S.SIGNATURE_BYTES // 2], unsigned),
      'no_signature_block': (data[:-S.TRAILER_BYTES], unsigned),
      'extended': (data + b'\0', unsigned),
      'empty': (b'', unsigned),
      'foreign_key': (P.sign(container, ATTACKER), 'signed by key ' +
                      S.key_id(S.public_bytes(ATTACKER)) + ', which is not trusted'),
      'corrupted': (data[:200] + bytes([data[200] ^ 0x10]) + data[201:], 'bad signature'),
      'corrupted_signature': (data[:-1] + bytes([data[-1] ^ 1]), 'bad signature'),
      'transplanted_trailer': (fix_checksum(container[:200] + bytes([container[200] ^ 0x10])
                                            + container[201:]) + trailer, 'bad signature'),
      # a valid signature of the container, but as a manifest: another signature context
      'other_context': (S.sign(container, KEY, 'manifest'), 'bad signature'),
      'magic': (b'PK' + data[2:], 'bad signature'),
  }
  # The maker's own bugs, signed: the framing, checksum and header checks behind the signature.
  signed = lambda c: P.sign(c, KEY)
  cases.update({
      'version': (rebuild(*split(data), version=7), 'unknown format version 7'),
      'v1_signed': (rebuild(*split(data), version=1), 'unknown format version 1'),
      'truncated': (signed(container[:-40]), 'truncated'),
      'truncated_header': (signed(container[:12]), 'truncated'),
      'checksum': (signed(container[:200] + bytes([container[200] ^ 0x10]) + container[201:]),
                   'checksum mismatch'),
      'trailing': (signed(container + b'\0'), '1 unexpected bytes'),
      'bad_magic': (signed(b'PK' + container[2:]), 'bad magic'),
      'empty_container': (signed(b''), 'truncated'),
  })
  for name, (content, match) in cases.items():
    bad = tmp_path / name
    bad.write_bytes(content)
    refused(bad, base, match)
  refused(tmp_path / 'missing', base, 'cannot read package')
  refused(path, base, 'no trusted keys', trusted=[])
  assert_same(P.apply(path, base, trusted=[S.public_bytes(ATTACKER), TRUSTED[0]]), info['params'])


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
      'update_zero': ('malformed header: update 0', lambda h: h.update(update=0)),
      'update_float': ('malformed header: update 2.0', lambda h: h.update(update=2.0)),
      'no_update': ('malformed header', lambda h: h.pop('update')),
  }
  for name, (match, mutate) in mutations.items():
    h = json.loads(json.dumps(header))
    mutate(h)
    with pytest.raises(P.PackageError, match=match):
      P.apply_bytes(rebuild(h, body), base, trusted=TRUSTED)
  # Reordered JSON keys and a changed informational field are harmless: same params.
  h = json.loads(json.dumps(header))
  h['meta'] = {'note': 'x'}
  assert_same(P.apply_bytes(rebuild(h, body, sort_keys=False), base, trusted=TRUSTED),
              P.apply(path, base, trusted=TRUSTED))


def test_update_number_is_signed_and_checked(package_file):
  path, base, info = package_file
  data = path.read_bytes()
  assert info['update'] == 1 and split(data)[0]['update'] == 1
  assert_same(P.apply(path, base, trusted=TRUSTED, current_update=0), info['params'])
  for current in (1, 5):
    with pytest.raises(P.PackageError, match=f'makes update 1, device is at update {current}: '
                       'not newer'):
      P.apply(path, base, trusted=TRUSTED, current_update=current)
  # Raising the number without the key breaks the signature.
  header, body = split(data)
  header['update'] = 9
  forged = rebuild(header, body, key=None) + data[-S.TRAILER_BYTES:]
  with pytest.raises(P.PackageError, match='bad signature'):
    P.apply_bytes(forged, base, trusted=TRUSTED, current_update=1)
  with pytest.raises(ValueError, match='update number 0'):
    export(path.parent / 'u0', 'sparse', {}, base, update=0)


def test_an_update_that_makes_a_leaf_non_finite_is_refused(tmp_path):
  """A signed package whose fingerprint really is that of its non-finite result (a maker bug the
  exporter refuses to write, built here by hand) is still refused by the device's self-check."""
  base = make_base()
  half = base['encoder']['half']
  payload = {'encoder/half': {'kind': 'full', 'values': np.zeros(half.shape, np.float32)}}
  data = P.sign(P.encode('full', payload, base, 'int8', 'none')[0], KEY)
  header, body = split(data)
  big_scale = np.float32(1e30).astype('<f4').tobytes()      # int8 values * scale overflow fp16
  values = np.ones(half.size, np.int8).tobytes()
  body = big_scale + values
  result = {p: v for p, v in flat(base).items()}
  with np.errstate(over='ignore'):
    result['encoder/half'] = half + np.full(half.shape, 1e30, np.float32).astype(np.float16)
  assert np.isinf(result['encoder/half']).all()
  header['result_fingerprint'] = reference_fingerprint(result)
  with pytest.raises(P.PackageError, match="leaf 'encoder/half' would become non-finite"):
    P.apply_bytes(rebuild(header, body), base, trusted=TRUSTED)


# ------------------------------------------------------------------ fuzzing

# Cases per run (both fuzz tests): 6,040 in CI; FUZZ_SCALE=4 runs 24,160 (README).
FUZZ_SCALE = int(os.environ.get('FUZZ_SCALE', '1'))
FUZZ_CONFIGS = [('sparse', 'fp16', 'none'), ('hashed', 'int8', 'zlib'),
                ('lowrank', 'fp16', 'none'), ('full', 'int8', 'lzma')]


def raw_damage(data, rng):
  """(label, bytes): flipped bytes, truncation and extension, as a bad link or disk makes them."""
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


def rebuilt_damage(container, rng):
  """(label, container): changes with the checksum recomputed, which reach the header and body
  decoders: flipped bits, and swapped or shifted header fields."""
  n = len(container)
  for _ in range(400 * FUZZ_SCALE):
    damaged = bytearray(container)
    for position in rng.integers(0, n - 32, rng.integers(1, 3)):
      damaged[position] ^= 1 << int(rng.integers(0, 8))
    yield 'resigned', fix_checksum(bytes(damaged))
  header, body = split(P.sign(container, KEY))
  for _ in range(40 * FUZZ_SCALE):
    h = json.loads(json.dumps(header))
    leaves = h['leaves']
    i, j = rng.integers(0, len(leaves), 2)
    key = ['shape', 'path', 'kind', 'dtype'][int(rng.integers(0, 4))]
    choice = int(rng.integers(0, 5))
    if choice == 0:
      leaves[i][key], leaves[j][key] = leaves[j][key], leaves[i][key]
    elif choice == 1:
      leaves[i], leaves[j] = leaves[j], leaves[i]
    elif choice == 2:
      h['base_fingerprint'], h['result_fingerprint'] = (h['result_fingerprint'],
                                                         h['base_fingerprint'])
    elif choice == 3:
      h['update'] = int(rng.integers(1, 2**40))
    else:
      names = [k for k in leaves[i] if isinstance(leaves[i][k], int)]
      if names:
        leaves[i][names[0]] += int(rng.integers(-2, 3))
    yield 'swapped', rebuild(h, body, key=None)


def refingerprint(container, base):
  """As an attacker (or a buggy maker) would: the container with its result fingerprint set to
  what the decoder makes of it, and the checksum recomputed; unchanged if it does not decode."""
  try:
    header, body = P._open_container(container, 'rebuild')
    new = P._decode(header, body, P.flatten(base), 'rebuild')
  except P.PackageError:
    return container
  header['result_fingerprint'] = reference_fingerprint(new)
  return P._container(P.FORMAT_VERSION, json.dumps(header).encode(), body)


def forgeries(container, genuine, rng):
  """(label, bytes): what an attacker without the maker's key can send for a container of their
  choosing: it bare, with the genuine package's trailer, signed by their own key, or signed by
  their key under the maker's public key."""
  trailer = genuine[-S.TRAILER_BYTES:]
  theirs = P.sign(container, ATTACKER)
  choice = int(rng.integers(0, 4))
  if choice == 0:
    return 'unsigned', container
  if choice == 1:
    return 'transplanted', container + trailer
  if choice == 2:
    return 'own_key', theirs
  return 'claimed_key', container + trailer[:8 + 32] + theirs[-S.SIGNATURE_BYTES:]


REASONS = [('not signed', 'unsigned'), ('which is not trusted', 'untrusted'),
           ('bad signature', 'signature'),
           ('checksum mismatch', 'checksum'), ('bad magic', 'magic'),
           ('unknown format version', 'version'), ('truncated', 'truncated'),
           ('unexpected bytes after the checksum', 'trailing'), ('malformed header', 'header'),
           ('package is for base', 'base'), ('corrupt body', 'body'),
           ('result fingerprint', 'result'), ('would become non-finite', 'non-finite'),
           ('in the package,', 'leaf'), ('not in the base', 'leaf'), ('non-float', 'leaf'),
           ("fuzz: leaf '", 'leaf data'), ('not newer', 'update')]
SIGNATURE_REASONS = {'unsigned', 'untrusted', 'signature'}


def reason(message):
  assert message.startswith('fuzz: ') and '\n' not in message
  return next((name for text, name in REASONS if text in message), 'other')


def test_fuzz_without_the_key_every_case_is_refused():
  """The attacker's view: damaged packages, and any container they build (checksum and
  fingerprints made valid for the change, or a whole new package for params of their choosing),
  are refused for want of the maker's signature."""
  rng = np.random.default_rng(4321)
  base = make_base()
  outcomes, total = {}, 0
  for method, value_dtype, compression in FUZZ_CONFIGS:
    trainable, fixed = trained_diff(method, base)
    container, _ = P.encode(method, D.to_payload(method, trainable, fixed, base), base,
                            value_dtype, compression)
    genuine = P.sign(container, KEY)
    frozen = frozen_copy(base)
    cases = list(raw_damage(genuine, rng))
    for label, damaged in rebuilt_damage(container, rng):
      kind, forged = forgeries(refingerprint(damaged, base), genuine, rng)
      cases.append((f'{label}/{kind}', forged))
    for _ in range(10 * FUZZ_SCALE):   # a new package, valid but for the signature
      target = {p: v for p, v in flat(base).items() if v.dtype == np.float32 and v.ndim == 2}
      payload = {p: {'kind': 'full', 'values': rng.normal(size=v.shape)}
                 for p, v in target.items()}
      kind, forged = forgeries(P.encode('full', payload, base, value_dtype)[0], genuine, rng)
      cases.append((f'new/{kind}', forged))
    for label, data in cases:
      if data == genuine:
        continue
      total += 1
      with pytest.raises(P.PackageError) as error:
        P.apply_bytes(data, frozen, trusted=TRUSTED, name='fuzz', current_update=0)
      outcomes.setdefault(label.split('/')[-1], set()).add(reason(str(error.value)))
    assert_same(frozen, base)
  assert total >= 2900 * FUZZ_SCALE
  assert set().union(*outcomes.values()) == SIGNATURE_REASONS
  assert outcomes['unsigned'] == {'unsigned'} and outcomes['own_key'] == {'untrusted'}
  assert outcomes['transplanted'] == outcomes['claimed_key'] == {'signature'}
  assert outcomes['extend'] == {'unsigned'}


def test_fuzz_with_the_key_refuses_cleanly_or_applies_exactly():
  """The fuzzer holds the maker's key and signs every damaged container (with the checksum, and
  for half of the decodable ones the result fingerprint, made valid): each case is refused with
  one line, or applied to finite params with the fingerprint it claims, exactly the intended
  params when it claims theirs. No crash, no hang."""
  rng = np.random.default_rng(1234)
  base = make_base()
  outcomes, total, slowest = {}, 0, 0.0
  for method, value_dtype, compression in FUZZ_CONFIGS:
    trainable, fixed = trained_diff(method, base)
    container, expected = P.encode(method, D.to_payload(method, trainable, fixed, base), base,
                                   value_dtype, compression)
    frozen = frozen_copy(base)
    cases = list(raw_damage(container, rng))
    for i, (label, damaged) in enumerate(rebuilt_damage(container, rng)):
      cases.append((label, refingerprint(damaged, base) if i % 2 else damaged))
    for label, damaged in cases:
      total += 1
      signed = P.sign(damaged, KEY)
      start = time.perf_counter()
      try:
        result = P.apply_bytes(signed, frozen, trusted=TRUSTED, name='fuzz')
      except P.PackageError as e:
        outcomes.setdefault(label, set()).add(reason(str(e)))
        continue
      finally:
        slowest = max(slowest, time.perf_counter() - start)
      claimed = split(signed)[0]['result_fingerprint']
      got = flat(result)
      assert reference_fingerprint(got) == claimed
      assert sorted(got) == sorted(flat(base))
      for path, leaf in got.items():
        assert leaf.dtype == flat(base)[path].dtype and leaf.shape == flat(base)[path].shape
        assert np.all(np.isfinite(leaf)), path
      if claimed == reference_fingerprint(flat(expected)):
        assert_same(result, expected)
        assert damaged == container or label in ('swapped', 'resigned')
        outcomes.setdefault(label, set()).add('harmless')
      else:
        assert label in ('swapped', 'resigned')
        outcomes.setdefault(label, set()).add('other params')
    assert_same(frozen, base)
  assert total >= 2900 * FUZZ_SCALE
  assert slowest < 5.0
  # raw damage is caught by the framing or the checksum; re-signed damage by the decoder
  assert outcomes['flip'] <= {'checksum', 'magic', 'version', 'truncated', 'trailing'}
  assert outcomes['truncate'] <= {'truncated', 'magic'}
  assert outcomes['extend'] == {'trailing'}
  assert 'checksum' not in outcomes['resigned'] | outcomes['swapped']
  assert {'header', 'body', 'result', 'other params'} <= outcomes['resigned']
  assert not SIGNATURE_REASONS & set().union(*outcomes.values())
  assert 'other' not in set().union(*outcomes.values())


# ------------------------------------------------------------------ device side

def test_package_applies_without_jax(package_file, tmp_path):
  path, base, info = package_file
  P.save_params(tmp_path / 'model.npz', base)
  S.write_trusted(tmp_path / 'trusted.json', TRUSTED)
  script = ('import sys; sys.modules["jax"] = None; sys.modules["jaxlib"] = None\n'
            'from diffs import cli, package\n'
            f'sys.exit(cli.main(["apply", "{path}", "--params", "{tmp_path / "model.npz"}", '
            f'"--trusted", "{tmp_path / "trusted.json"}"]))')
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert info['result_fingerprint'] in result.stdout and 'update 1 (was 0)' in result.stdout
  assert_same(P.load_params(tmp_path / 'model.npz'), info['params'])
  assert P.load_state(tmp_path / 'model.npz')[1] == 1


def test_inspect_and_cli(package_file, capsys):
  path, base, info = package_file
  summary = P.inspect(path)
  assert summary['method'] == 'sparse' and summary['bytes'] == info['bytes']
  assert summary['base_fingerprint'] == info['base_fingerprint']
  assert summary['update'] == 1 and summary['signer'] == TRUSTED[0].hex()
  assert summary['stored_values'] == sum(leaf['stored_values'] for leaf in summary['leaves'])
  assert summary['header_bytes'] + summary['body_bytes'] + 14 + 8 + 32 + 104 == summary['bytes']
  assert {leaf['path'] for leaf in summary['leaves']} == info['payload_paths']
  assert {'encoder/kernel', 'joint/w'} <= info['payload_paths']
  assert cli.main(['inspect', str(path)]) == 0
  out = capsys.readouterr().out
  assert 'encoder/kernel' in out and TRUSTED[0].hex() in out and 'update 1' in out
  with pytest.raises(P.PackageError, match='not trusted'):
    P.inspect(path, trusted=[S.public_bytes(ATTACKER)])
  params = path.parent / 'other.npz'
  P.save_params(params, make_base(seed=3))
  S.write_trusted(path.parent / 'trusted.json', TRUSTED)
  before = params.read_bytes()
  assert cli.main(['apply', str(path), '--params', str(params), '--trusted',
                   str(path.parent / 'trusted.json')]) == 1
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
  info = export(tmp_path / 'u', 'sparse', D.to_payload('sparse', trainable, masks, base), base)
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
      export(tmp_path / 'u', 'sparse', payload, base)
  assert not list(tmp_path.iterdir())              # nothing written on failure
