"""The generic binary-delta baseline: what an over-the-air system ships without neural diffs.

The new model's params file is delta-compressed against the old one's with zstandard, the old
file's bytes serving as the compression dictionary (long-distance matching, a window covering
both). The file is the one the device holds: `package.params_bytes`, the float32 .npz that
`package.save_params` writes (leaves in pytree order, '/'-joined paths, little-endian native
dtypes); the package itself stores only deltas, at fp16 or int8. That is the fair comparison: the device already stores those bytes, a generic updater
needs nothing from this project to rebuild the next file from them, and the result is
bit-identical to what applying the package gives, so both deliver the same model at the same
accuracy and differ only in bytes on the wire. np.savez stamps every member with the zip epoch,
so the bytes are a function of the params alone and the maker can rebuild the dictionary.

Fine-tuning changes the low-order mantissa bits of every weight it touches, so a byte-level
delta finds few long matches there: for full fine-tuning expect nearly the raw size.

Payload (integers little-endian): magic b'\\x89NDBDZ\\r\\n', version u16, sha256 of the base
file, sha256 of the new file, the new file's length u64, then one zstd frame. Unsigned: a
shipped one would carry the package's 104-byte signature trailer too.

numpy, zstandard and bsdiff4 (`sizes` only); no JAX.
"""
import hashlib
import io
import struct

import bsdiff4
import numpy as np
import zstandard

from diffs import package

MAGIC = b'\x89NDBDZ\r\n'
VERSION = 1
LEVEL = 19                   # zstd's highest non-ultra level; 22 gains nothing on float32 files
_HEADER = struct.Struct('<8sH32s32sQ')
_MAX_WINDOW_LOG = 31         # zstd's limit on 64-bit machines


class BinaryDeltaError(ValueError):
  """A binary delta that cannot be decoded; the message is one line naming the payload."""


def serialize(params) -> bytes:
  """The params file a device holds (`package.params_bytes`, without an update number)."""
  return package.params_bytes(params)


def _window_log(nbytes: int) -> int:
  """log2 of a window that covers `nbytes` (the dictionary plus the new file)."""
  log = max(10, (nbytes - 1).bit_length())
  if log > _MAX_WINDOW_LOG:
    raise ValueError(f'{nbytes} bytes of base plus new model exceed zstd\'s 2**31-byte window')
  return log


def _compressor(source_size: int, dictionary: bytes = b''):
  window = _window_log(len(dictionary) + source_size)
  params = zstandard.ZstdCompressionParameters.from_level(
      LEVEL, source_size=source_size, dict_size=len(dictionary), window_log=window,
      enable_ldm=True)
  if not dictionary:
    return zstandard.ZstdCompressor(compression_params=params)
  return zstandard.ZstdCompressor(compression_params=params, dict_data=_dictionary(dictionary))


def _dictionary(base_bytes: bytes):
  return zstandard.ZstdCompressionDict(base_bytes, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def _encode_bytes(base_bytes: bytes, new_bytes: bytes) -> bytes:
  frame = _compressor(len(new_bytes), base_bytes).compress(new_bytes)
  return _HEADER.pack(MAGIC, VERSION, hashlib.sha256(base_bytes).digest(),
                      hashlib.sha256(new_bytes).digest(), len(new_bytes)) + frame


def encode(base_params, new_params) -> bytes:
  """The payload that turns `base_params`' file into `new_params`' (zstd, base as dictionary)."""
  return _encode_bytes(serialize(base_params), serialize(new_params))


def decode(base_params, payload: bytes, name: str = '<binary delta>') -> dict:
  """`new_params` (nested dicts of numpy arrays, bit-identical) from `encode`'s payload and the
  same base; BinaryDeltaError, one line naming `name`, for another base or a damaged payload."""
  payload = bytes(payload)
  if payload[:len(MAGIC)] != MAGIC[:len(payload[:len(MAGIC)])]:
    raise BinaryDeltaError(f'{name}: not a binary delta (bad magic)')
  if len(payload) < _HEADER.size:
    raise BinaryDeltaError(f'{name}: truncated ({len(payload)} bytes, the header is '
                           f'{_HEADER.size})')
  _, version, base_hash, new_hash, length = _HEADER.unpack_from(payload)
  if version != VERSION:
    raise BinaryDeltaError(f'{name}: unknown version {version} (this reader knows {VERSION})')
  base_bytes = serialize(base_params)
  have = hashlib.sha256(base_bytes).digest()
  if have != base_hash:
    raise BinaryDeltaError(f'{name}: made for base {base_hash.hex()[:16]}, given base '
                           f'{have.hex()[:16]}; decode with the model it was encoded against')
  frame = payload[_HEADER.size:]
  try:
    window = _window_log(len(base_bytes) + length)
    if zstandard.frame_content_size(frame) != length:   # checked before anything is allocated
      raise ValueError(f'zstd frame does not hold the {length} bytes the header says')
    decoder = zstandard.ZstdDecompressor(dict_data=_dictionary(base_bytes),
                                         max_window_size=2**window).decompressobj()
    new_bytes = decoder.decompress(frame)
    if not decoder.eof or decoder.unused_data:
      raise ValueError('zstd frame is incomplete or followed by junk')
  except (ValueError, zstandard.ZstdError) as e:
    raise BinaryDeltaError(f'{name}: corrupt or truncated: {" ".join(str(e).split())}') from None
  if hashlib.sha256(new_bytes).digest() != new_hash:
    raise BinaryDeltaError(f'{name}: corrupt or truncated: the decoded file fails its sha256 '
                           f'{new_hash.hex()[:16]}')
  with np.load(io.BytesIO(new_bytes), allow_pickle=False) as npz:
    return package.unflatten({key: npz[key] for key in npz.files})


def sizes(base_params, new_params) -> dict:
  """Bytes of `new_params`' file: raw, plain zstd (same settings, no dictionary), the binary
  delta (`encode`, header included) and bsdiff4's patch against the base file."""
  base_bytes, new_bytes = serialize(base_params), serialize(new_params)
  return {'raw_bytes': len(new_bytes),
          'zstd_bytes': len(_compressor(len(new_bytes)).compress(new_bytes)),
          'binary_delta_bytes': len(_encode_bytes(base_bytes, new_bytes)),
          'bsdiff4_bytes': len(bsdiff4.diff(base_bytes, new_bytes))}


def format_sizes(info: dict) -> str:
  """One line of `sizes`, each as a percentage of the raw file."""
  raw = info['raw_bytes']
  return ', '.join(f'{key[:-len("_bytes")]} {value} bytes ({100 * value / raw:.2f}%)'
                   for key, value in info.items())
