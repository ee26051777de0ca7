"""The update package: a signed, versioned, checksummed binary file that turns a base model into
the next. docs/DESIGN.md ("Update packages: format and threat model") says what it protects.

numpy, `cryptography` (diffs.signing) and the standard library only: a device applies packages
without JAX.

Layout (all integers little-endian):

  magic        8 bytes   b'\\x89NDIFF\\r\\n' (the 0x89 and CR LF catch 7-bit and text-mode damage)
  version      u16       FORMAT_VERSION; magic + version are the only fixed part across versions
  header_len   u32
  header       JSON (utf-8): method, value_dtype, compression, hash, base/result fingerprints,
               update (the number of the update the package produces, >= 1), stored_values,
               raw_body_bytes, meta, and per changed leaf: path, dtype, shape, kind and the
               kind's integers (nnz + index coding, K + seed, rank)
  body_len     u64
  body         zlib / lzma / raw stream of the per-leaf segments, in header order
  checksum     sha256 over every byte before it
  signature    104-byte trailer (diffs.signing): magic, the maker's Ed25519 public key, and the
               signature over every byte before the signature

Per-leaf segments (values are fp16, or int8 with one float32 scale per stored array):
  sparse   [scale] indices (delta-coded LEB128 varints or a bitmap, whichever is smaller) values
  hashed   [scale] K bucket values        (entry i = s(i) * v[h(i)], hash below)
  lowrank  [scale_a][scale_b] A [m, r] B [r, n]   (leaf reshaped to [prod(shape[:-1]), shape[-1]])
  full     [scale] every value of the leaf

`apply` refuses anything it cannot prove right (PackageError, one line naming the file): before
reading anything else it checks that a trusted key signed every byte; then magic, version,
lengths, checksum, header structure, that the update number is higher than the device's, the
base fingerprint, every header field against the base, the exact decompressed size; then decodes
and checks that no leaf became non-finite and the fingerprint of the result. The signature stops
attackers; the checksum and fingerprints catch the maker's own bugs.

The applied params are `base + dense(delta)` computed leaf by leaf in the base dtype, with a
deterministic dense(delta) (no BLAS: low-rank products are accumulated in float64 one rank at a
time, which is exact up to one rounding order fixed here), so a device reproduces the result
fingerprint bit for bit. `export` runs the same decoder on what it wrote and returns those params.
"""
from collections.abc import Mapping
import hashlib
import io
import json
import lzma
import math
import struct
import zlib

import numpy as np

from diffs import files
from diffs import signing

MAGIC = b'\x89NDIFF\r\n'
FORMAT_VERSION = 2
HASH_NAME = 'lowbias32-xor-v1'
METHODS = ('sparse', 'hashed', 'lowrank', 'full')
KINDS = ('sparse', 'hashed', 'lowrank', 'full')
VALUE_BYTES = {'fp16': 2, 'int8': 1}
COMPRESSIONS = ('zlib', 'lzma', 'none')
_MAX_VARINT_BYTES = 5              # indices and gaps < 2**35
_PREFIX = struct.Struct('<8sHI')   # magic, version, header_len
_BODY_LEN = struct.Struct('<Q')
_DIGEST_BYTES = 32
MAX_UPDATE = 2**53          # update numbers stay exact in any JSON reader
# The device's update number, stored in its params .npz; never a parameter path (those have no
# empty '/'-separated parts).
UPDATE_ENTRY = 'ndiff//update'


class PackageError(ValueError):
  """A package (or params file) that cannot be applied; the message is one line naming the file."""


# ----------------------------------------------------------------------------- pytree paths

def path_str(keypath) -> str:
  """'/'-joined path from a sequence of keys (str/int, or JAX key entries)."""
  parts = []
  for key in keypath:
    for attr in ('key', 'idx', 'name'):   # jax DictKey / SequenceKey / GetAttrKey
      if hasattr(key, attr):
        key = getattr(key, attr)
        break
    part = str(key)
    if '/' in part or not part:
      raise ValueError(f'parameter key {part!r} is empty or contains "/"')
    parts.append(part)
  return '/'.join(parts)


def flatten(tree) -> dict:
  """{'/'-joined path: leaf} for nested Mappings / lists / tuples (leaves left as they are)."""
  out = {}

  def visit(node, keys):
    if isinstance(node, Mapping):
      for key, child in node.items():
        if not isinstance(key, str):
          raise ValueError(f'parameter key {key!r} at {path_str(keys) or "<root>"} is not a str')
        visit(child, keys + (key,))
    elif isinstance(node, (list, tuple)):
      for index, child in enumerate(node):
        visit(child, keys + (index,))
    else:
      out[path_str(keys)] = node

  visit(tree, ())
  return out


def unflatten_like(template, flat: dict):
  """The structure of `template` with leaves taken from `flat` (keys as `flatten` makes them)."""

  def build(node, keys):
    if isinstance(node, Mapping):
      return {key: build(child, keys + (key,)) for key, child in node.items()}
    if isinstance(node, (list, tuple)):
      return type(node)(build(child, keys + (i,)) for i, child in enumerate(node))
    return flat[path_str(keys)]

  return build(template, ())


def unflatten(flat: dict) -> dict:
  """Nested dicts from '/'-joined paths."""
  root = {}
  for path, leaf in flat.items():
    node = root
    *parents, last = path.split('/')
    for part in parents:
      node = node.setdefault(part, {})
      if not isinstance(node, dict):
        raise ValueError(f'path {path!r} runs through a leaf')
    if last in node:
      raise ValueError(f'path {path!r} given twice')
    node[last] = leaf
  return root


def _as_array(leaf, path) -> np.ndarray:
  array = np.asarray(leaf)
  if array.dtype == object:
    raise ValueError(f'leaf {path!r} is not a numeric array')
  return array


# ----------------------------------------------------------------------------- fingerprint

def fingerprint(params) -> str:
  """sha256 (hex) over sorted paths, dtype names, shapes and little-endian bytes of every leaf."""
  return _fingerprint_flat(flatten(params))


def _fingerprint_flat(flat: dict) -> str:
  digest = hashlib.sha256(b'ndiff-fingerprint-v1\0')
  for path in sorted(flat):
    array = _as_array(flat[path], path)
    if array.dtype.byteorder == '>':
      array = array.astype(array.dtype.newbyteorder('<'))
    data = np.ascontiguousarray(array).tobytes()
    for text in (path, array.dtype.name):
      encoded = text.encode('utf-8')
      digest.update(struct.pack('<I', len(encoded)) + encoded)
    digest.update(struct.pack(f'<I{array.ndim}Q', array.ndim, *array.shape))
    digest.update(struct.pack('<Q', len(data)) + data)
  return digest.hexdigest()


# ----------------------------------------------------------------------------- hashing

_M1, _M2 = np.uint32(0x7feb352d), np.uint32(0x846ca68b)
BUCKET_SALT, SIGN_SALT = 0x9e3779b9, 0x85ebca6b


def mix32(x) -> np.ndarray:
  """lowbias32 (a multiply-xorshift bijection on uint32); diffs.delta has the jnp twin."""
  x = np.atleast_1d(np.asarray(x, dtype=np.uint32))
  x = x ^ (x >> np.uint32(16))
  x = x * _M1                      # uint32 array arithmetic wraps mod 2**32
  x = x ^ (x >> np.uint32(15))
  x = x * _M2
  return x ^ (x >> np.uint32(16))


def leaf_seed(seed: int, path: str) -> int:
  """Per-leaf hash seed from a global seed and the leaf path (so leaves hash independently)."""
  salt = zlib.crc32(path.encode('utf-8'))
  return int(mix32(mix32(seed & 0xffffffff)[0] ^ np.uint32(salt))[0])


def hash_buckets(n: int, seed: int, k: int):
  """(bucket int64 [n] in [0, k), sign float32 [n] in {-1, +1}) for flat indices 0..n-1."""
  if n > 2**32:
    raise ValueError(f'leaf of {n} entries is too large for 32-bit index hashing')
  seed = np.uint32(seed)
  index = np.arange(n, dtype=np.uint32)
  bucket_key = mix32(seed ^ np.uint32(BUCKET_SALT))[0]
  sign_key = mix32(seed ^ np.uint32(SIGN_SALT))[0]
  bucket = (mix32(index ^ bucket_key) % np.uint32(k)).astype(np.int64)
  sign = 1.0 - 2.0 * (mix32(index ^ sign_key) >> np.uint32(31)).astype(np.float32)
  return bucket[:n], sign[:n].astype(np.float32)


# ----------------------------------------------------------------------------- quantization

def quantize(values, value_dtype: str):
  """(bytes, scale): fp16 little-endian values (scale None) or int8 with a float32 scale."""
  values = np.asarray(values, dtype=np.float32).ravel()
  if not np.all(np.isfinite(values)):
    raise ValueError('non-finite value to quantize')
  if value_dtype == 'fp16':
    with np.errstate(over='ignore'):   # reported below, with the value
      half = values.astype('<f2')
    if not np.all(np.isfinite(half)):
      raise ValueError(f'value {np.abs(values).max():g} overflows fp16 (use int8)')
    return half.tobytes(), None
  if value_dtype == 'int8':
    amax = np.float32(np.abs(values).max()) if values.size else np.float32(0)
    scale = np.float32(amax / np.float32(127))
    if scale > 0:
      q = np.clip(np.rint(values / scale), -127, 127).astype(np.int8)
    else:
      q = np.zeros(values.shape, np.int8)
    return q.tobytes(), scale
  raise ValueError(f'unknown value_dtype {value_dtype!r} (expected fp16 or int8)')


def dequantize(data: bytes, scale, value_dtype: str) -> np.ndarray:
  """float32 values from `quantize`'s bytes."""
  if value_dtype == 'fp16':
    return np.frombuffer(data, dtype='<f2').astype(np.float32)
  return np.frombuffer(data, dtype=np.int8).astype(np.float32) * np.float32(scale)


def roundtrip(values, value_dtype: str) -> np.ndarray:
  """The float32 values a device decodes for `values` (same shape): quantize then dequantize."""
  values = np.asarray(values, dtype=np.float32)
  data, scale = quantize(values, value_dtype)
  return dequantize(data, scale, value_dtype).reshape(values.shape)


# ----------------------------------------------------------------------------- index coding

def varint_encode(values) -> bytes:
  """LEB128 of non-negative integers < 2**35, vectorized."""
  v = np.asarray(values, dtype=np.uint64).ravel()
  if v.size and int(v.max()) >= 2**(7 * _MAX_VARINT_BYTES):
    raise ValueError(f'varint value {int(v.max())} too large')
  groups = np.stack([(v >> np.uint64(7 * j)) & np.uint64(0x7f)
                     for j in range(_MAX_VARINT_BYTES)], axis=1).astype(np.uint8)
  length = np.ones(v.shape, np.int64)
  for j in range(1, _MAX_VARINT_BYTES):
    length += (v >> np.uint64(7 * j)) > 0
  position = np.arange(_MAX_VARINT_BYTES)[None, :]
  more = (position < length[:, None] - 1).astype(np.uint8) << np.uint8(7)
  return (groups | more)[position < length[:, None]].tobytes()


def varint_decode(data: bytes, count: int) -> np.ndarray:
  """Exactly `count` canonical LEB128 integers filling `data`, as int64; ValueError otherwise."""
  b = np.frombuffer(data, dtype=np.uint8)
  if b.size == 0:
    if count:
      raise ValueError(f'no index bytes for {count} indices')
    return np.zeros(0, np.int64)
  last = np.flatnonzero((b & 0x80) == 0)
  if last.size == 0 or last[-1] != b.size - 1:
    raise ValueError('index varints end mid-number')
  if last.size != count:
    raise ValueError(f'{last.size} index varints, header says {count}')
  first = np.concatenate([[0], last[:-1] + 1])
  length = last - first + 1
  if length.max() > _MAX_VARINT_BYTES:
    raise ValueError('index varint too long')
  if np.any((length > 1) & (b[last] == 0)):
    raise ValueError('non-canonical index varint')
  position = np.arange(b.size) - np.repeat(first, length)
  parts = (b & 0x7f).astype(np.int64) << (7 * position)
  return np.add.reduceat(parts, first)


def _encode_indices(indices: np.ndarray, n: int):
  """(coding, bytes): delta-coded varints (gap - 1) or a bitmap of n bits, whichever is smaller."""
  gaps = np.diff(indices, prepend=-1) - 1
  varints = varint_encode(gaps)
  bitmap_len = (n + 7) // 8
  if len(varints) < bitmap_len:
    return 'varint', varints
  bits = np.zeros(n, np.uint8)
  bits[indices] = 1
  return 'bitmap', np.packbits(bits, bitorder='little').tobytes()


def _decode_indices(coding: str, data: bytes, nnz: int, n: int) -> np.ndarray:
  if coding == 'varint':
    gaps = varint_decode(data, nnz)
    if gaps.size and gaps.max() >= n:
      raise ValueError('index gap past the end of the leaf')
    indices = np.cumsum(gaps + 1) - 1
    if indices.size and indices[-1] >= n:
      raise ValueError(f'index {indices[-1]} past the end of the leaf ({n} entries)')
    return indices
  bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder='little')
  if bits[n:].any():
    raise ValueError('bitmap padding bits are set')
  indices = np.flatnonzero(bits[:n])
  if indices.size != nnz:
    raise ValueError(f'bitmap holds {indices.size} indices, header says {nnz}')
  return indices


# ----------------------------------------------------------------------------- leaf codecs

def matrix_shape(shape):
  """Low-rank leaves are reshaped to [prod(shape[:-1]), shape[-1]]."""
  return math.prod(shape[:-1]), shape[-1]


def _segment_sizes(entry: dict, value_dtype: str):
  """Byte sizes of the leaf's body segments, in order, from its validated header entry."""
  vb, scale = VALUE_BYTES[value_dtype], (4 if value_dtype == 'int8' else 0)
  kind, n = entry['kind'], math.prod(entry['shape'])
  if kind == 'sparse':
    return [scale, entry['index_bytes'], entry['nnz'] * vb]
  if kind == 'hashed':
    return [scale, entry['k'] * vb]
  if kind == 'lowrank':
    m, cols = matrix_shape(entry['shape'])
    return [scale, scale, m * entry['rank'] * vb, entry['rank'] * cols * vb]
  return [scale, n * vb]


def _split(data: bytes, sizes):
  out, offset = [], 0
  for size in sizes:
    out.append(data[offset:offset + size])
    offset += size
  return out


def _scale_of(segment: bytes, value_dtype: str):
  if value_dtype != 'int8':
    return None
  scale = np.frombuffer(segment, '<f4')[0]
  if not (np.isfinite(scale) and scale >= 0):
    raise ValueError(f'bad int8 scale {scale}')
  return scale


def _values(segment: bytes, scale, value_dtype: str) -> np.ndarray:
  values = dequantize(segment, scale, value_dtype)
  if not np.all(np.isfinite(values)):
    raise ValueError('non-finite stored value')
  return values


def _decode_leaf(entry: dict, data: bytes, value_dtype: str) -> np.ndarray:
  """Dense float32 delta (leaf shape) from the leaf's body bytes; ValueError if inconsistent."""
  shape, n, kind = tuple(entry['shape']), math.prod(entry['shape']), entry['kind']
  segments = _split(data, _segment_sizes(entry, value_dtype))
  if kind == 'sparse':
    scale = _scale_of(segments[0], value_dtype)
    indices = _decode_indices(entry['coding'], segments[1], entry['nnz'], n)
    dense = np.zeros(n, np.float32)
    dense[indices] = _values(segments[2], scale, value_dtype)
    return dense.reshape(shape)
  if kind == 'hashed':
    scale = _scale_of(segments[0], value_dtype)
    buckets = _values(segments[1], scale, value_dtype)
    bucket, sign = hash_buckets(n, entry['seed'], entry['k'])
    return (sign * buckets[bucket]).reshape(shape)
  if kind == 'lowrank':
    m, cols = matrix_shape(shape)
    r = entry['rank']
    a = _values(segments[2], _scale_of(segments[0], value_dtype), value_dtype).reshape(m, r)
    b = _values(segments[3], _scale_of(segments[1], value_dtype), value_dtype).reshape(r, cols)
    return _lowrank_product(a, b).reshape(shape)
  return _values(segments[1], _scale_of(segments[0], value_dtype), value_dtype).reshape(shape)


def _lowrank_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """a @ b rounded to float32, reproducibly: float32*float32 is exact in float64, and the rank-1
  terms are summed in a fixed order with elementwise ufuncs (no BLAS reassociation)."""
  acc = np.zeros((a.shape[0], b.shape[1]), np.float64)
  for j in range(a.shape[1]):
    acc += np.multiply.outer(a[:, j].astype(np.float64), b[j].astype(np.float64))
  return acc.astype(np.float32)


def _encode_leaf(path: str, fields: Mapping, base_leaf: np.ndarray, method: str,
                 value_dtype: str):
  """(header entry, body bytes) for one leaf's payload fields."""
  kind = fields.get('kind', method)
  shape, n = base_leaf.shape, base_leaf.size
  entry = {'path': path, 'dtype': base_leaf.dtype.name, 'shape': list(shape), 'kind': kind}
  if kind not in KINDS:
    raise ValueError(f'{path}: unknown kind {kind!r} (expected one of {KINDS})')

  def pack(values):
    data, scale = quantize(values, value_dtype)
    return data, (b'' if scale is None else np.float32(scale).astype('<f4').tobytes())

  def expect(name, want_shape):
    value = np.asarray(fields[name])
    if value.shape != tuple(want_shape):
      raise ValueError(f'{path}: field {name!r} has shape {value.shape}, expected {want_shape}')
    return value

  if kind == 'sparse':
    indices = np.asarray(fields['indices']).astype(np.int64).ravel()
    values = expect('values', indices.shape)
    order = np.argsort(indices, kind='stable')
    indices, values = indices[order], values[order]
    if indices.size and (indices[0] < 0 or indices[-1] >= n or np.any(np.diff(indices) == 0)):
      raise ValueError(f'{path}: sparse indices must be distinct and in [0, {n})')
    coding, index_bytes = _encode_indices(indices, n)
    data, scale = pack(values)
    entry.update(nnz=int(indices.size), coding=coding, index_bytes=len(index_bytes))
    return entry, scale + index_bytes + data
  if kind == 'hashed':
    buckets = np.asarray(fields['buckets']).ravel()
    if not 1 <= buckets.size <= n:
      raise ValueError(f'{path}: {buckets.size} hash buckets for {n} entries')
    data, scale = pack(buckets)
    entry.update(k=int(buckets.size), seed=int(fields['seed']) & 0xffffffff)
    return entry, scale + data
  if kind == 'lowrank':
    if len(shape) < 2:
      raise ValueError(f'{path}: low-rank delta needs a leaf with ndim >= 2, got shape {shape}')
    m, cols = matrix_shape(shape)
    a = np.asarray(fields['a'])
    r = a.shape[-1] if a.ndim == 2 else -1
    a, b = expect('a', (m, r)), expect('b', (r, cols))
    if not 1 <= r <= min(m, cols):
      raise ValueError(f'{path}: rank {r} outside [1, {min(m, cols)}]')
    (data_a, scale_a), (data_b, scale_b) = pack(a), pack(b)
    entry.update(rank=int(r))
    return entry, scale_a + scale_b + data_a + data_b
  data, scale = pack(expect('values', shape))
  return entry, scale + data


# ----------------------------------------------------------------------------- header checks

_TOP_KEYS = {'method', 'value_dtype', 'compression', 'hash', 'base_fingerprint',
             'result_fingerprint', 'update', 'stored_values', 'raw_body_bytes', 'leaves', 'meta'}
_LEAF_KEYS = {'sparse': {'nnz', 'coding', 'index_bytes'}, 'hashed': {'k', 'seed'},
              'lowrank': {'rank'}, 'full': set()}


def _int(value, name, low, high):
  if type(value) is not int or not low <= value <= high:
    raise ValueError(f'{name} {value!r} is not an integer in [{low}, {high}]')
  return value


def _check_header(header) -> None:
  """Structure and types of the header alone (no base needed); ValueError naming the field."""
  if not isinstance(header, dict) or set(header) != _TOP_KEYS:
    got = sorted(header) if isinstance(header, dict) else type(header).__name__
    raise ValueError(f'header fields {got} != {sorted(_TOP_KEYS)}')
  for name, allowed in (('method', METHODS), ('value_dtype', tuple(VALUE_BYTES)),
                        ('compression', COMPRESSIONS), ('hash', (HASH_NAME,))):
    if header[name] not in allowed:
      raise ValueError(f'unknown {name} {header[name]!r}')
  for name in ('base_fingerprint', 'result_fingerprint'):
    value = header[name]
    if not (isinstance(value, str) and len(value) == 64
            and all(c in '0123456789abcdef' for c in value)):
      raise ValueError(f'{name} {value!r} is not a sha256 hex digest')
  _int(header['update'], 'update', 1, MAX_UPDATE)
  if not isinstance(header['meta'], dict) or not isinstance(header['leaves'], list):
    raise ValueError('meta must be an object and leaves a list')
  seen, stored, raw = set(), 0, 0
  for entry in header['leaves']:
    if not isinstance(entry, dict) or not isinstance(entry.get('kind'), str) \
        or entry['kind'] not in _LEAF_KEYS:
      raise ValueError(f'bad leaf entry {str(entry)[:80]}')
    kind = entry['kind']
    if set(entry) != {'path', 'dtype', 'shape', 'kind'} | _LEAF_KEYS[kind]:
      raise ValueError(f'leaf entry fields {sorted(entry)} do not fit kind {kind!r}')
    path = entry['path']
    if not isinstance(path, str) or path in seen:
      raise ValueError(f'leaf path {path!r} is not a string or is repeated')
    seen.add(path)
    if not isinstance(entry['dtype'], str) or not isinstance(entry['shape'], list):
      raise ValueError(f'{path}: bad dtype/shape')
    shape = [_int(d, f'{path}: dimension', 0, 2**32) for d in entry['shape']]
    n = math.prod(shape)
    if n > 2**32:
      raise ValueError(f'{path}: {n} entries is too many')
    if kind == 'sparse':
      nnz = _int(entry['nnz'], f'{path}: nnz', 0, n)
      if entry['coding'] == 'bitmap':
        _int(entry['index_bytes'], f'{path}: bitmap bytes', (n + 7) // 8, (n + 7) // 8)
      elif entry['coding'] == 'varint':
        _int(entry['index_bytes'], f'{path}: varint bytes', nnz, _MAX_VARINT_BYTES * nnz)
      else:
        raise ValueError(f'{path}: unknown index coding {entry["coding"]!r}')
      stored += nnz
    elif kind == 'hashed':
      stored += _int(entry['k'], f'{path}: k', 1, n)
      _int(entry['seed'], f'{path}: seed', 0, 2**32 - 1)
    elif kind == 'lowrank':
      if len(shape) < 2:
        raise ValueError(f'{path}: low-rank leaf has shape {shape}')
      m, cols = matrix_shape(shape)
      rank = _int(entry['rank'], f'{path}: rank', 1, min(m, cols))
      stored += rank * (m + cols)
    else:
      stored += n
    raw += sum(_segment_sizes(entry, header['value_dtype']))
  _int(header['stored_values'], 'stored_values', stored, stored)
  _int(header['raw_body_bytes'], 'raw_body_bytes', raw, raw)


def _decompress(body: bytes, compression: str, expected: int) -> bytes:
  if compression == 'none':
    raw = body
  else:
    decoder = zlib.decompressobj() if compression == 'zlib' else lzma.LZMADecompressor()
    # max_length bounds memory on a damaged stream; one extra byte reveals an overlong one.
    raw = decoder.decompress(body, expected + 1)
    if not decoder.eof or decoder.unused_data:
      raise ValueError(f'{compression} stream is incomplete, overlong or followed by junk')
  if len(raw) != expected:
    raise ValueError(f'body decompresses to {len(raw)} bytes, header says {expected}')
  return raw


# ----------------------------------------------------------------------------- container

def _container(version: int, header: bytes, body: bytes) -> bytes:
  """The unsigned package: everything before the signature trailer."""
  data = _PREFIX.pack(MAGIC, version, len(header)) + header + _BODY_LEN.pack(len(body)) + body
  return data + hashlib.sha256(data).digest()


def sign(container: bytes, private_key) -> bytes:
  """The package: `container` signed by the maker's Ed25519 private key."""
  return signing.sign(container, private_key, 'package')


def open_package(data: bytes, trusted, name: str):
  """(header dict, compressed body) of a package that a key in `trusted` signed, after the
  signature (checked first: nothing unsigned is parsed), framing, checksum and header checks."""
  try:
    container = signing.verify(data, trusted, 'package', name)
  except signing.SignatureError as e:
    raise PackageError(str(e)) from None
  return _open_container(container, name)


def _open_container(data: bytes, name: str):
  """(header dict, compressed body) after magic, version, length and checksum checks."""
  if data[:len(MAGIC)] != MAGIC[:len(data[:len(MAGIC)])]:
    raise PackageError(f'{name}: not a neural-diff package (bad magic)')
  if len(data) < _PREFIX.size:
    raise PackageError(f'{name}: truncated ({len(data)} bytes)')
  _, version, header_len = _PREFIX.unpack_from(data)
  if version != FORMAT_VERSION:
    raise PackageError(f'{name}: unknown format version {version} (this reader knows '
                       f'{FORMAT_VERSION})')
  body_at = _PREFIX.size + header_len + _BODY_LEN.size
  if len(data) < body_at:
    raise PackageError(f'{name}: truncated ({len(data)} bytes, header needs {body_at})')
  (body_len,) = _BODY_LEN.unpack_from(data, body_at - _BODY_LEN.size)
  total = body_at + body_len + _DIGEST_BYTES
  if len(data) < total:
    raise PackageError(f'{name}: truncated ({len(data)} bytes, expected {total})')
  if len(data) > total:
    raise PackageError(f'{name}: {len(data) - total} unexpected bytes after the checksum')
  if hashlib.sha256(data[:-_DIGEST_BYTES]).digest() != data[-_DIGEST_BYTES:]:
    raise PackageError(f'{name}: checksum mismatch')
  try:
    header = json.loads(data[_PREFIX.size:_PREFIX.size + header_len].decode('utf-8'))
    _check_header(header)
  except (ValueError, RecursionError) as e:   # JSON and unicode errors are ValueErrors
    raise PackageError(f'{name}: malformed header: {_one_line(e)}') from None
  return header, data[body_at:body_at + body_len]


def _one_line(error) -> str:
  return ' '.join(str(error).split())[:300]


def _decode(header: dict, body: bytes, base_flat: dict, name: str) -> dict:
  """New flat params (fresh arrays) from a checked header/body and the base; PackageError else."""
  have = _fingerprint_flat(base_flat)
  if have != header['base_fingerprint']:
    raise PackageError(f'{name}: package is for base {header["base_fingerprint"][:16]}, '
                       f'device has {have[:16]}')
  for entry in header['leaves']:
    path = entry['path']
    if path not in base_flat:
      raise PackageError(f'{name}: leaf {path!r} is not in the base params')
    leaf = np.asarray(base_flat[path])
    if entry['dtype'] != leaf.dtype.name or tuple(entry['shape']) != leaf.shape:
      raise PackageError(f'{name}: leaf {path!r} is {entry["dtype"]}{entry["shape"]} in the '
                         f'package, {leaf.dtype.name}{list(leaf.shape)} in the base')
    if not np.issubdtype(leaf.dtype, np.floating):
      raise PackageError(f'{name}: leaf {path!r} has non-float dtype {leaf.dtype.name}')
  try:
    raw = _decompress(body, header['compression'], header['raw_body_bytes'])
  except (ValueError, zlib.error, lzma.LZMAError, EOFError) as e:
    raise PackageError(f'{name}: corrupt body: {_one_line(e)}') from None
  new = {path: np.array(leaf, copy=True) for path, leaf in base_flat.items()}
  offset = 0
  for entry in header['leaves']:
    size = sum(_segment_sizes(entry, header['value_dtype']))
    try:
      delta = _decode_leaf(entry, raw[offset:offset + size], header['value_dtype'])
    except ValueError as e:
      raise PackageError(f'{name}: leaf {entry["path"]!r}: {_one_line(e)}') from None
    offset += size
    base_leaf = np.asarray(base_flat[entry['path']])
    with np.errstate(over='ignore', invalid='ignore'):
      new[entry['path']] = base_leaf + delta.astype(base_leaf.dtype)
    if _newly_non_finite(new[entry['path']], base_leaf):
      raise PackageError(f'{name}: leaf {entry["path"]!r} would become non-finite; not applied')
  return new


def _newly_non_finite(new: np.ndarray, base: np.ndarray) -> bool:
  """Whether an entry that was finite in the base is not in `new` (inf/nan the base already had
  are the base's business)."""
  return bool(np.any(~np.isfinite(new) & np.isfinite(base)))


def decode_update(data: bytes, base_params, *, trusted, name: str = '<package>',
                  current_update: int | None = None):
  """(new params, header) of a package for `base_params`, checked as the module docstring says;
  with `current_update` (the device's number) a package whose update number is not higher is
  refused, so an old package cannot roll a device back."""
  header, body = open_package(bytes(data), trusted, name)
  if current_update is not None and header['update'] <= current_update:
    raise PackageError(f'{name}: package makes update {header["update"]}, device is at update '
                       f'{current_update}: not newer (a replayed or out-of-order package)')
  base_flat = _checked_flatten(base_params, 'base params')
  new = _decode(header, body, base_flat, name)
  got = _fingerprint_flat(new)
  if got != header['result_fingerprint']:
    raise PackageError(f'{name}: result fingerprint {got[:16]} != package\'s '
                       f'{header["result_fingerprint"][:16]}; not applied')
  return unflatten_like(base_params, new), header


def apply_bytes(data: bytes, base_params, *, trusted, name: str = '<package>',
                current_update: int | None = None):
  """`apply` for in-memory package bytes."""
  return decode_update(data, base_params, trusted=trusted, name=name,
                       current_update=current_update)[0]


def read_package(path) -> bytes:
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise PackageError(f'{path}: cannot read package: {e.strerror or e}') from None


def apply(path, base_params, *, trusted, current_update: int | None = None):
  """New params (numpy, structure of `base_params`) = base + the package's delta; PackageError if
  a key in `trusted` (diffs.signing: TrustedKeys or raw public keys) did not sign it, or it is
  damaged, of another version, not newer than `current_update`, or made for other base params.
  The base is not modified. diffs.device applies a package to a device's params file.
  """
  return apply_bytes(read_package(path), base_params, trusted=trusted, name=str(path),
                     current_update=current_update)


def _checked_flatten(params, what) -> dict:
  try:
    flat = flatten(params)
    for path, leaf in flat.items():
      _as_array(leaf, path)
  except ValueError as e:
    raise PackageError(f'{what}: {e}') from None
  return flat


def encode(method, payload: Mapping, base_params, value_dtype='fp16', compression='zlib',
           meta=None, update: int = 1):
  """(unsigned package bytes, applied params): the in-memory half of `export` (`sign` makes the
  package)."""
  if method not in METHODS:
    raise ValueError(f'unknown method {method!r} (expected one of {METHODS})')
  if value_dtype not in VALUE_BYTES:
    raise ValueError(f'unknown value_dtype {value_dtype!r} (expected fp16 or int8)')
  if compression not in COMPRESSIONS:
    raise ValueError(f'unknown compression {compression!r} (expected one of {COMPRESSIONS})')
  base_flat = {p: _as_array(v, p) for p, v in flatten(base_params).items()}
  entries, parts = [], []
  for path in sorted(payload):
    if path not in base_flat:
      raise ValueError(f'payload leaf {path!r} is not in the base params')
    if not np.issubdtype(base_flat[path].dtype, np.floating):
      raise ValueError(f'payload leaf {path!r} has non-float base dtype')
    entry, part = _encode_leaf(path, payload[path], base_flat[path], method, value_dtype)
    entries.append(entry)
    parts.append(part)
  raw = b''.join(parts)
  header = {'method': method, 'value_dtype': value_dtype, 'compression': compression,
            'hash': HASH_NAME, 'base_fingerprint': _fingerprint_flat(base_flat),
            'result_fingerprint': '0' * 64, 'update': update, 'stored_values': 0,
            'raw_body_bytes': len(raw),
            'leaves': entries, 'meta': dict(meta or {})}
  header['stored_values'] = sum(_stored(e) for e in entries)
  _check_header(header)
  if compression == 'zlib':
    body = zlib.compress(raw, 9)
  elif compression == 'lzma':
    body = lzma.compress(raw, preset=9)
  else:
    body = raw
  # The result is whatever the device's decoder makes of these bytes, so run that decoder.
  applied = _decode(header, body, base_flat, '<export>')   # refuses leaves made non-finite
  header['result_fingerprint'] = _fingerprint_flat(applied)
  header_bytes = json.dumps(header, sort_keys=True, separators=(',', ':')).encode('utf-8')
  return _container(FORMAT_VERSION, header_bytes, body), unflatten_like(base_params, applied)


def _stored(entry) -> int:
  kind, shape = entry['kind'], entry['shape']
  if kind == 'sparse':
    return entry['nnz']
  if kind == 'hashed':
    return entry['k']
  if kind == 'lowrank':
    return entry['rank'] * sum(matrix_shape(shape))
  return math.prod(shape)


def export(path, method, payload: Mapping, base_params, result_params=None, value_dtype='fp16',
           compression='zlib', meta=None, *, key, update: int) -> dict:
  """Writes the package, signed with the maker's private `key` (diffs.signing), atomically;
  returns {'path', 'bytes', 'params' (exactly what `apply` will produce: train the next update
  from these), 'base_fingerprint', 'result_fingerprint', 'update', 'signer' (raw public key),
  'stored_values', 'max_abs_error' (vs `result_params`, the unquantized target, if given)}.

  update: the number of the update this package produces (>= 1, higher than the base's): a
  device refuses a package whose number is not higher than its own.

  payload: {'/'-joined leaf path: fields}; leaves not named are unchanged. Fields by kind
  (`kind` defaults to `method`): sparse {'indices' flat int, 'values'}; hashed {'seed' uint32,
  'buckets' [K]}; lowrank {'a' [m, r], 'b' [r, n]}; full {'values' leaf-shaped}.
  diffs.delta.to_payload builds them from a delta.
  """
  if type(update) is not int or not 1 <= update <= MAX_UPDATE:
    raise ValueError(f'update number {update!r} is not an integer in [1, {MAX_UPDATE}]')
  container, applied = encode(method, payload, base_params, value_dtype, compression, meta,
                              update)
  data = sign(container, key)
  signer = signing.public_bytes(key)
  header, _ = open_package(data, [signer], str(path))   # what a device trusting the key reads
  files.atomic_write(path, data)
  info = {'path': str(path), 'bytes': len(data), 'params': applied,
          'base_fingerprint': header['base_fingerprint'],
          'result_fingerprint': header['result_fingerprint'], 'update': header['update'],
          'signer': signer, 'stored_values': header['stored_values']}
  if result_params is not None:
    target, got = flatten(result_params), flatten(applied)
    info['max_abs_error'] = max(
        (float(np.max(np.abs(np.asarray(got[p], np.float64) - np.asarray(target[p], np.float64))))
         for p in got if np.asarray(got[p]).size), default=0.0)
  return info


# ----------------------------------------------------------------------------- params files

def params_bytes(params, update: int | None = None) -> bytes:
  """The .npz bytes `save_params` writes."""
  arrays = {p: _as_array(v, p) for p, v in flatten(params).items()}
  if update is not None:
    arrays[UPDATE_ENTRY] = np.asarray(_int(update, 'update', 0, MAX_UPDATE), np.int64)
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()


def save_params(path, params, update: int | None = None, check=None) -> None:
  """Params as .npz with '/'-joined path keys, written atomically; `update`, if given, is the
  device's update number, stored in the same file so the two change together. `check(temp)`
  runs on the written temp file before it replaces `path` (diffs.files.atomic_write)."""
  files.atomic_write(path, params_bytes(params, update), check=check)


def load_state(path) -> tuple[dict, int]:
  """(nested-dict params, update number) from a `save_params` .npz file; a file saved without a
  number is at update 0 (the model as installed)."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {key: npz[key] for key in npz.files}
    update = arrays.pop(UPDATE_ENTRY, np.int64(0))
    if update.shape != () or update.dtype != np.int64 or not 0 <= int(update) <= MAX_UPDATE:
      raise ValueError(f'bad update number {update!r}')
    return unflatten(arrays), int(update)
  except OSError as e:
    raise PackageError(f'{path}: cannot read params: {e.strerror or e}') from None
  except Exception as e:   # zipfile.BadZipFile and friends: one clear line naming the file
    raise PackageError(f'{path}: not a params .npz file ({_one_line(e)})') from None


def load_params(path) -> dict:
  """Nested-dict params from a `save_params` .npz file."""
  return load_state(path)[0]


# ----------------------------------------------------------------------------- reporting

def full_model_bytes(params, value_dtype='fp16', compression='zlib') -> int:
  """Bytes of the whole model in this format (method 'full' over a zero base), the yardstick for
  package sizes; leaves that are not floating point count at their raw size."""
  flat = {p: _as_array(v, p) for p, v in flatten(params).items()}
  floats = {p: v for p, v in flat.items() if np.issubdtype(v.dtype, np.floating) and v.size}
  zeros = unflatten({p: np.zeros_like(v) for p, v in floats.items()})
  data, _ = encode('full', {p: {'values': v} for p, v in floats.items()}, zeros, value_dtype,
                   compression)
  return len(data) + signing.TRAILER_BYTES + sum(v.nbytes for p, v in flat.items() if p not in floats)


def signer(path) -> tuple[bytes, bool]:
  """(the signer's raw public key, whether the signature by that key is valid); trusts nothing."""
  try:
    return signing.signer(read_package(path), 'package', str(path))
  except signing.SignatureError as e:
    raise PackageError(str(e)) from None


def inspect(path, trusted=None) -> dict:
  """Header fields, sizes and per-leaf summary of a package (checks it is intact, needs no base).
  Without `trusted` the package need only be validly signed by the key it names."""
  data = read_package(path)
  try:
    public, _ = signing.signer(data, 'package', str(path))
  except signing.SignatureError as e:
    raise PackageError(str(e)) from None
  header, body = open_package(data, trusted if trusted is not None else [public], str(path))
  leaves = []
  for entry in header['leaves']:
    summary = {k: entry[k] for k in ('path', 'kind', 'dtype', 'shape')}
    summary['stored_values'] = _stored(entry)
    summary['raw_bytes'] = sum(_segment_sizes(entry, header['value_dtype']))
    if entry['kind'] == 'sparse':
      summary['index_coding'] = entry['coding']
    for key in ('k', 'rank'):
      if key in entry:
        summary[key] = entry[key]
    leaves.append(summary)
  return {'file': str(path), 'bytes': len(data), 'format_version': FORMAT_VERSION,
          'update': header['update'], 'signer': public.hex(), 'method': header['method'], 'value_dtype': header['value_dtype'],
          'compression': header['compression'], 'base_fingerprint': header['base_fingerprint'],
          'result_fingerprint': header['result_fingerprint'],
          'stored_values': header['stored_values'], 'raw_body_bytes': header['raw_body_bytes'],
          'body_bytes': len(body), 'signature_bytes': signing.TRAILER_BYTES,
          'header_bytes': len(data) - len(body) - _DIGEST_BYTES - signing.TRAILER_BYTES
                          - _PREFIX.size - _BODY_LEN.size,
          'meta': header['meta'], 'leaves': leaves}


def format_inspect(info: dict) -> str:
  """Human-readable `inspect` output."""
  lines = [f'{info["file"]}: {info["bytes"]} bytes, format v{info["format_version"]}, '
           f'update {info["update"]}, method {info["method"]}, values {info["value_dtype"]}, '
           f'{info["compression"]}',
           f'  signer {info["signer"]}',
           f'  base   {info["base_fingerprint"]}', f'  result {info["result_fingerprint"]}',
           f'  stored values {info["stored_values"]}, body {info["raw_body_bytes"]} -> '
           f'{info["body_bytes"]} bytes, header {info["header_bytes"]} bytes']
  if info['meta']:
    lines.append(f'  meta {json.dumps(info["meta"], sort_keys=True)}')
  for leaf in info['leaves']:
    extra = ' '.join(f'{k}={leaf[k]}' for k in ('index_coding', 'k', 'rank') if k in leaf)
    lines.append(f'  {leaf["path"]:40s} {leaf["kind"]:8s} {leaf["dtype"]}{leaf["shape"]} '
                 f'values={leaf["stored_values"]} raw={leaf["raw_bytes"]}B {extra}'.rstrip())
  return '\n'.join(lines)
