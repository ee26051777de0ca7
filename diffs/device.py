"""The device's side of an update: apply a signed package to the params file it runs, or not at all.

numpy, `cryptography` and the standard library only: no JAX on the device.

The device's state is one .npz file (`package.save_params`): its params and its update number,
so the two change together, in one os.replace. `apply_update`

  1. reads the package, the state and the trusted keys;
  2. decodes (`package.decode_update`): the signature by a trusted key first, then the format,
     checksum, an update number higher than the device's, the base fingerprint, the leaves,
     that no leaf became non-finite, and the result fingerprint;
  3. writes the new state to a temp file beside the old, fsyncs it, and reads it back to check
     that it holds the package's result fingerprint and update number (the self-check before
     switching: what is checked is what the device will load);
  4. switches with os.replace.

A crash or SIGKILL before step 4 leaves the old params and the old update number; after it, the
new ones: never a mix (tests/test_device.py kills real processes at random moments).
"""
import glob
import os

from diffs import package
from diffs import signing


def state(params_path) -> tuple[str, int]:
  """(fingerprint, update number) of a device's params file."""
  params, update = package.load_state(params_path)
  return package.fingerprint(params), update


def apply_update(package_path, params_path, trusted, out_path=None) -> dict:
  """Applies the package at `package_path` to the device state at `params_path`, writing the new
  state to `out_path` (default: in place); `trusted` is a trusted-keys file path or a
  signing.TrustedKeys. Returns {'fingerprint', 'update', 'previous_update'}; PackageError (or
  signing.SignatureError for an unreadable trusted-keys file) and nothing written otherwise."""
  if not isinstance(trusted, signing.TrustedKeys):
    trusted = signing.load_trusted(trusted)
  data = package.read_package(package_path)
  params, update = package.load_state(params_path)
  new, header = package.decode_update(data, params, trusted=trusted, name=str(package_path),
                                      current_update=update)
  want = header['result_fingerprint']
  out_path = out_path or params_path

  def self_check(temp_path):
    written, written_update = package.load_state(temp_path)
    got = package.fingerprint(written)
    if got != want or written_update != header['update']:
      raise package.PackageError(
          f'{out_path}: written state reads back as update {written_update}, params {got[:16]}, '
          f'not update {header["update"]}, params {want[:16]}; old state kept')

  _remove_stale_temps(out_path)
  package.save_params(out_path, new, update=header['update'], check=self_check)
  return {'fingerprint': want, 'update': header['update'], 'previous_update': update}


def _remove_stale_temps(path) -> None:
  """Temp files an interrupted apply left beside `path` (diffs.files names them): without this,
  every power cut mid-apply would leave a model-sized file behind. A device applies one update at
  a time, so none of them belongs to a running apply."""
  directory, name = os.path.split(os.path.abspath(path))
  for stale in glob.glob(os.path.join(glob.escape(directory), glob.escape(f'.{name}.') + '*.tmp')):
    try:
      os.remove(stale)
    except OSError:
      pass
