"""The chain manifest: a signed list of a chain's packages in order, so that a device that missed
updates can tell which packages to fetch, and check each file it fetched before applying it.

`cryptography` and the standard library only (the device side). The manifest is JSON signed
like a package (diffs.signing, its own signature context):

  {"format": "ndiff-chain-manifest", "chain": NAME, "packages": [
     {"update": 1, "file": "update_1.diff", "bytes": ..., "sha256": ...,
      "base_fingerprint": ..., "result_fingerprint": ...}, ...]}

Entries are in increasing update order and each one's base is the previous one's result.
"""
import hashlib
import json
import os

from diffs import files
from diffs import package
from diffs import signing

FORMAT = 'ndiff-chain-manifest'
_ENTRY_KEYS = {'update', 'file', 'bytes', 'sha256', 'base_fingerprint', 'result_fingerprint'}


class ManifestError(ValueError):
  """A manifest that is unsigned, malformed or does not fit the device; one line naming it."""


def make(path, package_paths, private_key, chain: str = '') -> dict:
  """Writes the signed manifest of the packages at `package_paths` (in chain order; each must be
  signed by `private_key`) atomically; returns its content. Files are named relative to the
  manifest's directory."""
  public = signing.public_bytes(private_key)
  entries = []
  for package_path in package_paths:
    data = package.read_package(package_path)
    header, _ = package.open_package(data, [public], str(package_path))
    entries.append({'update': header['update'],
                    'file': os.path.relpath(package_path, os.path.dirname(os.path.abspath(path))),
                    'bytes': len(data), 'sha256': hashlib.sha256(data).hexdigest(),
                    'base_fingerprint': header['base_fingerprint'],
                    'result_fingerprint': header['result_fingerprint']})
  doc = {'format': FORMAT, 'chain': chain, 'packages': entries}
  _check(doc, str(path))
  message = json.dumps(doc, indent=1, sort_keys=True).encode()
  files.atomic_write(path, signing.sign(message, private_key, 'manifest'))
  return doc


def load(path, trusted) -> dict:
  """The content of a manifest that a key in `trusted` signed (checked before it is parsed)."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise ManifestError(f'{path}: cannot read manifest: {e.strerror or e}') from None
  try:
    message = signing.verify(data, trusted, 'manifest', str(path))
  except signing.SignatureError as e:
    raise ManifestError(str(e)) from None
  try:
    doc = json.loads(message.decode('utf-8'))
  except (ValueError, RecursionError) as e:
    raise ManifestError(f'{path}: malformed manifest: {" ".join(str(e).split())[:300]}') from None
  _check(doc, str(path))
  return doc


def plan(doc: dict, fingerprint: str, update: int, name: str = '<manifest>') -> list[dict]:
  """The entries a device with params `fingerprint` at `update` must fetch and apply, in order
  (empty when it holds the chain's last result); ManifestError if it is on no step of the chain.
  """
  entries = doc['packages']
  if entries and entries[-1]['result_fingerprint'] == fingerprint:
    return []
  for i, entry in enumerate(entries):
    if entry['base_fingerprint'] == fingerprint:
      if entry['update'] <= update:
        raise ManifestError(f'{name}: the next package after params {fingerprint[:16]} is '
                            f'update {entry["update"]}, but the device is at update {update}')
      return entries[i:]
  raise ManifestError(f'{name}: the device\'s params {fingerprint[:16]} (update {update}) are '
                      f'no base or result in this chain')


def check_fetched(entry: dict, path) -> None:
  """ManifestError unless the file at `path` is the one `entry` lists (size and sha256)."""
  data = package.read_package(path)
  if len(data) != entry['bytes'] or hashlib.sha256(data).hexdigest() != entry['sha256']:
    raise ManifestError(f'{path}: is not update {entry["update"]} as the manifest lists it '
                        f'({len(data)} bytes, expected {entry["bytes"]}, or another sha256)')


def _check(doc, name: str) -> None:
  if not isinstance(doc, dict) or set(doc) != {'format', 'chain', 'packages'} \
      or doc['format'] != FORMAT or not isinstance(doc['chain'], str) \
      or not isinstance(doc['packages'], list):
    raise ManifestError(f'{name}: not a {FORMAT} (expected the fields format, chain, packages)')
  previous = None
  for i, entry in enumerate(doc['packages']):
    if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
      raise ManifestError(f'{name}: package entry {i} does not have the fields '
                          f'{sorted(_ENTRY_KEYS)}')
    for key in ('update', 'bytes'):
      if type(entry[key]) is not int or not 1 <= entry[key] <= package.MAX_UPDATE:
        raise ManifestError(f'{name}: package entry {i}: {key} {entry[key]!r} is not a positive '
                            f'integer')
    for key in ('sha256', 'base_fingerprint', 'result_fingerprint'):
      value = entry[key]
      if not (isinstance(value, str) and len(value) == 64
              and all(c in '0123456789abcdef' for c in value)):
        raise ManifestError(f'{name}: package entry {i}: {key} {value!r} is not a sha256 hex '
                            f'digest')
    if not isinstance(entry['file'], str) or not entry['file']:
      raise ManifestError(f'{name}: package entry {i}: file {entry["file"]!r} is not a name')
    if previous is not None:
      if entry['update'] <= previous['update']:
        raise ManifestError(f'{name}: update {entry["update"]} listed after update '
                            f'{previous["update"]}: not in increasing order')
      if entry['base_fingerprint'] != previous['result_fingerprint']:
        raise ManifestError(f'{name}: update {entry["update"]} is not made for the result of '
                            f'update {previous["update"]}: the chain is broken there')
    previous = entry
