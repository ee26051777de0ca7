"""Ed25519 signatures on update packages, chain manifests and key rotations; the device's trusted
keys. docs/DESIGN.md, "Update packages: format and threat model", says what they protect.

`cryptography` and the standard library only (the device side has no JAX).

A signed file is MESSAGE followed by a fixed 104-byte trailer:

  magic       8 bytes   b'\\x89NDSIG\\r\\n'
  public key  32 bytes  the signer's raw Ed25519 public key
  signature   64 bytes  Ed25519 over CONTEXT[kind] + every byte before the signature

so a verifier finds the signature without parsing the message, and the signature covers every
byte but itself (the key included). The context string differs per kind of file, so a signed
manifest or key rotation can never pass for a package, nor the other way round.

Maker's key files: the private key is PEM (PKCS#8, unencrypted, mode 0600; never commit one),
the public key `<private>.pub` one line of 64 hex digits. The device's trusted-keys file is JSON
{"format": "ndiff-trusted-keys", "rotation": N, "keys": [hex, ...]}; it changes only by a
rotation (`make_rotation` / `rotate`): a signed {"format": "ndiff-key-rotation", "rotation": M,
"keys": [...]} with M > N, signed by a key the device trusts now.
"""
import json
import os
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from diffs import files

MAGIC = b'\x89NDSIG\r\n'
KEY_BYTES = 32
SIGNATURE_BYTES = 64
TRAILER_BYTES = len(MAGIC) + KEY_BYTES + SIGNATURE_BYTES
CONTEXTS = {'package': b'ndiff-package-signature-v1\0',
            'manifest': b'ndiff-manifest-signature-v1\0',
            'rotation': b'ndiff-key-rotation-signature-v1\0'}
TRUSTED_FORMAT = 'ndiff-trusted-keys'
ROTATION_FORMAT = 'ndiff-key-rotation'


class SignatureError(ValueError):
  """A file that is unsigned, signed by an untrusted key, or altered; or a bad key file. The
  message is one line naming the file."""


class TrustedKeys(NamedTuple):
  """The public keys a device accepts signatures from, and the rotation that installed them."""
  rotation: int
  keys: frozenset


# ----------------------------------------------------------------------------- keys

def public_bytes(private_key: ed25519.Ed25519PrivateKey) -> bytes:
  return private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)


def write_key_pair(path) -> bytes:
  """A new maker key: private key at `path` (0600), public key at `path`.pub; returns the raw
  public key. Refuses to overwrite an existing key, which would orphan every device trusting it.
  """
  public_path = str(path) + '.pub'
  for existing in (path, public_path):
    if os.path.exists(existing):
      raise SignatureError(f'{existing}: already exists; not overwriting a key')
  key = ed25519.Ed25519PrivateKey.generate()
  pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
  files.atomic_write(path, pem, mode=0o600)
  files.atomic_write(public_path, (public_bytes(key).hex() + '\n').encode())
  return public_bytes(key)


def load_private_key(path) -> ed25519.Ed25519PrivateKey:
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise SignatureError(f'{path}: cannot read private key: {e.strerror or e}') from None
  try:
    key = serialization.load_pem_private_key(data, password=None)
  except (ValueError, TypeError) as e:
    raise SignatureError(f'{path}: not an unencrypted PEM private key ({_one_line(e)})') from None
  if not isinstance(key, ed25519.Ed25519PrivateKey):
    raise SignatureError(f'{path}: a {type(key).__name__}, not an Ed25519 private key')
  return key


def maker_key(configured: str, chain_local: str) -> ed25519.Ed25519PrivateKey:
  """The key `configured` names (which must exist), or else the chain-local maker key at
  `chain_local`, made on first use: a key that only signs the experiment's own chain."""
  if configured:
    return load_private_key(configured)
  if not os.path.exists(chain_local):
    os.makedirs(os.path.dirname(os.path.abspath(chain_local)), exist_ok=True)
    write_key_pair(chain_local)
  return load_private_key(chain_local)


def parse_public_key(text: str, name: str) -> bytes:
  """Raw public key from 64 hex digits; SignatureError naming `name` otherwise."""
  text = text.strip() if isinstance(text, str) else text
  try:
    raw = bytes.fromhex(text)
  except (ValueError, TypeError):
    raw = b''
  if len(raw) != KEY_BYTES:
    raise SignatureError(f'{name}: {str(text)[:80]!r} is not an Ed25519 public key '
                         f'({2 * KEY_BYTES} hex digits)')
  return raw


def load_public_key(path) -> bytes:
  """Raw public key from a `.pub` file."""
  try:
    with open(path) as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise SignatureError(f'{path}: cannot read public key: {_one_line(e)}') from None
  return parse_public_key(text, str(path))


def key_id(public: bytes) -> str:
  """How keys are named in messages: the first 16 hex digits of the raw public key."""
  return public.hex()[:16]


# ----------------------------------------------------------------------------- signatures

def sign(message: bytes, private_key: ed25519.Ed25519PrivateKey, kind: str) -> bytes:
  """`message` followed by its signature trailer."""
  signed = bytes(message) + MAGIC + public_bytes(private_key)
  return signed + private_key.sign(CONTEXTS[kind] + signed)


def signer(data: bytes, kind: str, name: str) -> tuple[bytes, bool]:
  """(public key in the trailer, whether its signature over the file is valid); trusts nothing."""
  public = _trailer_key(data, name)
  return public, _valid(data, public, kind)


def verify(data: bytes, trusted, kind: str, name: str) -> bytes:
  """The message of a signed file after checking, before anything in it is read, that a key in
  `trusted` (TrustedKeys or raw public keys) signed every byte; SignatureError otherwise."""
  keys = trusted.keys if isinstance(trusted, TrustedKeys) else frozenset(trusted)
  if not keys:
    raise SignatureError(f'{name}: no trusted keys to check its signature against')
  public = _trailer_key(data, name)
  if public not in keys:
    raise SignatureError(f'{name}: signed by key {key_id(public)}, which is not trusted here')
  if not _valid(data, public, kind):
    raise SignatureError(f'{name}: bad signature (the file was altered or signed as another '
                         f'kind of file than a {kind})')
  return bytes(data[:-TRAILER_BYTES])


def _trailer_key(data: bytes, name: str) -> bytes:
  at = len(data) - TRAILER_BYTES
  if at < 0 or data[at:at + len(MAGIC)] != MAGIC:
    raise SignatureError(f'{name}: not signed (no signature block at its end: unsigned, '
                         f'truncated or extended)')
  return bytes(data[at + len(MAGIC):at + len(MAGIC) + KEY_BYTES])


def _valid(data: bytes, public: bytes, kind: str) -> bool:
  try:
    ed25519.Ed25519PublicKey.from_public_bytes(public).verify(
        bytes(data[-SIGNATURE_BYTES:]), CONTEXTS[kind] + bytes(data[:-SIGNATURE_BYTES]))
  except (InvalidSignature, ValueError):   # ValueError: bytes that are no curve point
    return False
  return True


# ----------------------------------------------------------------------------- trusted keys

def write_trusted(path, keys, rotation: int = 0) -> TrustedKeys:
  """Writes a trusted-keys file atomically (a device's initial one is installed with its model;
  later ones only by `rotate`)."""
  trusted = TrustedKeys(rotation, frozenset(keys))
  _check_keys(trusted.keys, str(path))
  text = json.dumps({'format': TRUSTED_FORMAT, 'rotation': rotation,
                     'keys': sorted(k.hex() for k in trusted.keys)}, indent=1) + '\n'
  files.atomic_write(path, text.encode())
  return trusted


def load_trusted(path) -> TrustedKeys:
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise SignatureError(f'{path}: cannot read trusted keys: {e.strerror or e}') from None
  return _parse_keys(data, TRUSTED_FORMAT, str(path))


def make_rotation(path, new_keys, rotation: int, private_key) -> None:
  """Writes a signed rotation to `new_keys` (raw public keys) with number `rotation`, signed by
  `private_key` (which devices must trust now)."""
  keys = frozenset(new_keys)
  _check_keys(keys, str(path))
  if type(rotation) is not int or rotation < 1:
    raise SignatureError(f'{path}: rotation number {rotation!r} must be an integer >= 1')
  message = json.dumps({'format': ROTATION_FORMAT, 'rotation': rotation,
                        'keys': sorted(k.hex() for k in keys)}).encode()
  files.atomic_write(path, sign(message, private_key, 'rotation'))


def rotate(trusted_path, rotation_path) -> TrustedKeys:
  """Replaces the trusted keys at `trusted_path` by those of the rotation file, if a key trusted
  now signed it and its number is higher than the installed rotation's; SignatureError else."""
  trusted = load_trusted(trusted_path)
  try:
    with open(rotation_path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise SignatureError(f'{rotation_path}: cannot read key rotation: {e.strerror or e}') from None
  name = str(rotation_path)
  new = _parse_keys(verify(data, trusted, 'rotation', name), ROTATION_FORMAT, name)
  if new.rotation <= trusted.rotation:
    raise SignatureError(f'{name}: rotation {new.rotation} is not newer than the installed '
                         f'rotation {trusted.rotation} (replayed?)')
  return write_trusted(trusted_path, new.keys, new.rotation)


def _parse_keys(data: bytes, expected_format: str, name: str) -> TrustedKeys:
  try:
    doc = json.loads(data.decode('utf-8'))
  except (ValueError, RecursionError) as e:
    raise SignatureError(f'{name}: not a {expected_format} file ({_one_line(e)})') from None
  if not isinstance(doc, dict) or set(doc) != {'format', 'rotation', 'keys'} \
      or doc['format'] != expected_format:
    raise SignatureError(f'{name}: not a {expected_format} file (expected the fields format, '
                         f'rotation, keys)')
  rotation = doc['rotation']
  if type(rotation) is not int or not 0 <= rotation < 2**63:
    raise SignatureError(f'{name}: rotation {rotation!r} is not a non-negative integer')
  if not isinstance(doc['keys'], list):
    raise SignatureError(f'{name}: keys must be a list of hex public keys')
  keys = frozenset(parse_public_key(k, name) for k in doc['keys'])
  _check_keys(keys, name)
  return TrustedKeys(rotation, keys)


def _check_keys(keys: frozenset, name: str) -> None:
  if not keys:
    raise SignatureError(f'{name}: an empty key list would make the device refuse every update')
  for key in keys:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
      raise SignatureError(f'{name}: {key!r} is not a raw {KEY_BYTES}-byte public key')


def _one_line(error) -> str:
  return ' '.join(str(error).split())[:300]
