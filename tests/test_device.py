"""Tests for the device side (diffs.device, diffs.manifest, the CLI): update numbers against
replay and rollback, the self-check before switching, processes killed mid-apply, manifests."""
import os
import signal
import subprocess
import sys
import time

from cryptography.hazmat.primitives.asymmetric import ed25519
import numpy as np
import pytest

from diffs import cli
from diffs import device
from diffs import manifest as M
from diffs import package as P
from diffs import signing as S

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = ed25519.Ed25519PrivateKey.generate()
FUZZ_SCALE = int(os.environ.get('FUZZ_SCALE', '1'))


def sparse_update(rng, params, nnz=6):
  """(payload, the params it makes, computed here): fp16 values added at random entries of w."""
  w = params['w']
  indices = np.sort(rng.choice(w.size, nnz, replace=False))
  values = rng.normal(size=nnz).astype(np.float16)
  new = w.copy().ravel()
  new[indices] += values.astype(np.float32)
  return {'w': {'indices': indices, 'values': values}}, {'w': new.reshape(w.shape)}


@pytest.fixture
def chain(tmp_path):
  """A base and three consecutive signed packages; a device state at update 0 trusting KEY."""
  rng = np.random.default_rng(0)
  params = [{'w': rng.normal(size=(6, 7)).astype(np.float32)}]
  paths = []
  for k in (1, 2, 3):
    payload, want = sparse_update(rng, params[-1])
    path = tmp_path / f'update_{k}.diff'
    info = P.export(path, 'sparse', payload, params[-1], key=KEY, update=k)
    np.testing.assert_array_equal(info['params']['w'], want['w'])
    params.append(want)
    paths.append(path)
  model, trusted = tmp_path / 'model.npz', tmp_path / 'trusted.json'
  P.save_params(model, params[0])
  S.write_trusted(trusted, [S.public_bytes(KEY)])
  return params, paths, model, trusted


def fingerprints(params):
  return [P.fingerprint(p) for p in params]


def test_updates_apply_in_order_and_old_ones_are_refused(chain):
  params, paths, model, trusted = chain
  fps = fingerprints(params)
  assert device.state(model) == (fps[0], 0)
  assert device.apply_update(paths[0], model, trusted) == {'fingerprint': fps[1], 'update': 1,
                                                           'previous_update': 0}
  assert device.state(model) == (fps[1], 1)
  np.testing.assert_array_equal(P.load_params(model)['w'], params[1]['w'])
  refusals = [(paths[0], 'makes update 1, device is at update 1: not newer'),     # replayed
              (paths[2], 'package is for base ' + fps[2][:16])]                    # skipped one
  for path, match in refusals:
    before = model.read_bytes()
    with pytest.raises(P.PackageError, match=match):
      device.apply_update(path, model, trusted)
    assert model.read_bytes() == before
  device.apply_update(paths[1], model, trusted)
  with pytest.raises(P.PackageError, match='makes update 1, device is at update 2'):   # rollback
    device.apply_update(paths[0], model, trusted)
  device.apply_update(paths[2], model, trusted)
  assert device.state(model) == (fps[3], 3)
  np.testing.assert_array_equal(P.load_params(model)['w'], params[3]['w'])


def test_replay_is_refused_even_where_the_base_fingerprint_matches(tmp_path):
  """Update 2 undoes update 1 (exactly: zeros plus and minus fp16 values), so the device is back
  on update 1's base: only the update number stops update 1 from being replayed."""
  base = {'w': np.zeros((3, 4), np.float32)}
  values = np.array([0.5, -2.0, 3.25], np.float16)
  there = {'w': {'indices': [0, 5, 11], 'values': values}}
  back = {'w': {'indices': [0, 5, 11], 'values': -values}}
  one = P.export(tmp_path / 'u1', 'sparse', there, base, key=KEY, update=1)
  two = P.export(tmp_path / 'u2', 'sparse', back, one['params'], key=KEY, update=2)
  assert two['result_fingerprint'] == one['base_fingerprint'] == P.fingerprint(base)
  model, trusted = tmp_path / 'model.npz', tmp_path / 'trusted.json'
  P.save_params(model, base)
  S.write_trusted(trusted, [S.public_bytes(KEY)])
  device.apply_update(tmp_path / 'u1', model, trusted)
  device.apply_update(tmp_path / 'u2', model, trusted)
  assert device.state(model) == (P.fingerprint(base), 2)
  P.apply(tmp_path / 'u1', P.load_params(model), trusted=[S.public_bytes(KEY)])   # would fit
  with pytest.raises(P.PackageError, match='not newer'):
    device.apply_update(tmp_path / 'u1', model, trusted)


def test_a_crash_or_a_bad_write_keeps_the_old_state(chain, tmp_path, monkeypatch):
  params, paths, model, trusted = chain
  before = model.read_bytes()

  def power_cut(*args):
    raise OSError('power cut')
  monkeypatch.setattr(os, 'replace', power_cut)
  with pytest.raises(OSError, match='power cut'):
    device.apply_update(paths[0], model, trusted)
  monkeypatch.undo()
  assert model.read_bytes() == before
  # the disk returns other bytes than the decoded params: the self-check refuses to switch
  real = P.params_bytes

  def flaky_disk(new, update=None):
    return real({'w': new['w'] + np.float32(1)}, update)
  monkeypatch.setattr(P, 'params_bytes', flaky_disk)
  with pytest.raises(P.PackageError, match='reads back as update 1, params .*; old state kept'):
    device.apply_update(paths[0], model, trusted)
  monkeypatch.undo()
  assert model.read_bytes() == before
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      'model.npz', 'trusted.json', 'update_1.diff', 'update_2.diff', 'update_3.diff']
  out = tmp_path / 'new.npz'
  device.apply_update(paths[0], model, trusted, out)              # out of place
  assert model.read_bytes() == before and device.state(out)[1] == 1
  (tmp_path / 'junk.npz').write_bytes(b'not a zip')
  with pytest.raises(P.PackageError, match='junk.npz: not a params'):
    device.apply_update(paths[0], tmp_path / 'junk.npz', trusted)
  with pytest.raises(S.SignatureError, match='missing.json: cannot read trusted keys'):
    device.apply_update(paths[0], model, tmp_path / 'missing.json')


def _files(directory):
  return {e.name: (e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(directory)}


def _kill_after_first_write(process, directory, delay):
  """SIGKILL `delay` seconds after the process first changes anything in `directory`: the
  moments a writer, atomic or not, is most fragile, wherever its implementation puts them."""
  before = _files(directory)
  while process.poll() is None:
    try:
      if _files(directory) != before:
        time.sleep(delay)
        break
    except FileNotFoundError:   # a file went between listing and stat: a change too
      time.sleep(delay)
      break
    time.sleep(0.0002)
  process.send_signal(signal.SIGKILL)


def test_killed_mid_apply_leaves_the_old_or_the_new_state(tmp_path):
  """SIGKILL to a real `diffs.cli apply` process at random moments: half stratified over its
  whole run, half within 50 ms (about what writing the state takes here) of its first write.
  Afterwards the device holds the old params at the old number, or the new at the new."""
  rng = np.random.default_rng(7)
  base = {'w': rng.normal(size=(1500, 1000)).astype(np.float32)}     # a 6 MB model
  payload = {'w': {'kind': 'full', 'values': 0.01 * rng.normal(size=(1500, 1000))}}
  package_path = tmp_path / 'update_1.diff'
  info = P.export(package_path, 'full', payload, base, key=KEY, update=1, compression='none')
  model, trusted = tmp_path / 'model.npz', tmp_path / 'trusted.json'
  P.save_params(model, base)
  S.write_trusted(trusted, [S.public_bytes(KEY)])
  old_state, new_state = (P.fingerprint(base), 0), (info['result_fingerprint'], 1)
  old_bytes = model.read_bytes()
  script = ('import sys; sys.modules["jax"] = None\n'
            'from diffs import cli\n'
            f'sys.exit(cli.main(["apply", "{package_path}", "--params", "{model}", '
            f'"--trusted", "{trusted}"]))')
  start = time.perf_counter()
  subprocess.run([sys.executable, '-c', script], cwd=REPO, check=True, capture_output=True,
                 timeout=120)
  duration = time.perf_counter() - start
  assert device.state(model) == new_state
  trials = 12 * FUZZ_SCALE
  outcomes = []
  for i in range(trials):
    model.write_bytes(old_bytes)
    process = subprocess.Popen([sys.executable, '-c', script], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if i % 2:
      _kill_after_first_write(process, tmp_path, 0.05 * rng.random())
    else:
      time.sleep((i + rng.random()) / trials * 1.2 * duration)
      process.send_signal(signal.SIGKILL)
    process.wait(timeout=120)
    state = device.state(model)                # loads: never a torn file
    assert state in (old_state, new_state), (i, state)
    outcomes.append('old' if state == old_state else 'new')
  assert 'old' in outcomes
  model.write_bytes(old_bytes)                 # an interrupted apply's temp file goes next time
  device.apply_update(package_path, model, trusted)
  assert [p.name for p in tmp_path.iterdir() if p.name.endswith('.tmp')] == []


def test_manifest_tells_a_device_what_to_fetch(chain, tmp_path, capsys):
  params, paths, model, trusted = chain
  fps = fingerprints(params)
  key_path = tmp_path / 'maker.key'
  key_path.write_bytes(KEY.private_bytes(*_pem()))
  out = tmp_path / 'chain.manifest'
  assert cli.main(['manifest', '--key', str(key_path), '--out', str(out), '--chain', 'demo',
                   *map(str, paths)]) == 0
  assert capsys.readouterr().out.strip() == f'{out}: 3 packages'
  doc = M.load(out, S.load_trusted(trusted))
  assert [(e['update'], e['file'], e['base_fingerprint'], e['result_fingerprint'])
          for e in doc['packages']] == [(k, f'update_{k}.diff', fps[k - 1], fps[k])
                                        for k in (1, 2, 3)]
  for entry, path in zip(doc['packages'], paths):
    M.check_fetched(entry, path)
  with pytest.raises(M.ManifestError, match='is not update 2 as the manifest lists it'):
    M.check_fetched(doc['packages'][1], paths[0])
  assert M.plan(doc, fps[0], 0) == doc['packages']
  assert M.plan(doc, fps[1], 1) == doc['packages'][1:]
  assert M.plan(doc, fps[3], 3) == []
  with pytest.raises(M.ManifestError, match='are no base or result in this chain'):
    M.plan(doc, '0' * 64, 0)
  with pytest.raises(M.ManifestError, match='device is at update 4'):
    M.plan(doc, fps[1], 4)
  # a device that missed updates 1 and 2 fetches and applies what the plan lists
  device.apply_update(paths[0], model, trusted)
  assert cli.main(['plan', str(out), '--params', str(model), '--trusted', str(trusted)]) == 0
  listed = capsys.readouterr().out.splitlines()
  assert [line.split(':')[0] for line in listed] == ['update 2', 'update 3']
  for entry in M.plan(doc, *device.state(model)):
    device.apply_update(tmp_path / entry['file'], model, trusted)
  assert device.state(model) == (fps[3], 3)
  assert cli.main(['plan', str(out), '--params', str(model), '--trusted', str(trusted)]) == 0
  assert capsys.readouterr().out.strip() == 'up to date at update 3'
  # refused: altered, signed by another key, a broken or reordered chain
  data = out.read_bytes()
  (tmp_path / 'altered').write_bytes(data.replace(b'update_2.diff', b'update_9.diff'))
  other = ed25519.Ed25519PrivateKey.generate()
  (tmp_path / 'foreign').write_bytes(S.sign(data[:-S.TRAILER_BYTES], other, 'manifest'))
  for name, match in [('altered', 'bad signature'), ('foreign', 'not trusted')]:
    with pytest.raises(M.ManifestError, match=f'{name}: .*{match}'):
      M.load(tmp_path / name, S.load_trusted(trusted))
  with pytest.raises(M.ManifestError, match='update 1 listed after update 2'):
    M.make(tmp_path / 'm', [paths[1], paths[0]], KEY)
  with pytest.raises(M.ManifestError, match='update 3 is not made for the result of update 1'):
    M.make(tmp_path / 'm', [paths[0], paths[2]], KEY)
  with pytest.raises(P.PackageError, match='not trusted'):
    M.make(tmp_path / 'm', paths, other)


def _pem():
  from cryptography.hazmat.primitives import serialization  # pylint: disable=g-import-not-at-top
  return (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
          serialization.NoEncryption())


def test_version_and_signer_commands(chain, capsys):
  params, paths, model, trusted = chain
  fps = fingerprints(params)
  assert cli.main(['version', str(model)]) == 0
  assert capsys.readouterr().out.strip() == f'update 0 {fps[0]}'
  assert cli.main(['apply', str(paths[0]), '--params', str(model), '--trusted',
                   str(trusted)]) == 0
  capsys.readouterr()
  assert cli.main(['version', str(model)]) == 0
  assert capsys.readouterr().out.strip() == f'update 1 {fps[1]}'
  public = S.public_bytes(KEY).hex()
  assert cli.main(['signer', str(paths[0])]) == 0
  assert capsys.readouterr().out.strip() == f'{public} valid'
  assert cli.main(['signer', str(paths[0]), '--trusted', str(trusted)]) == 0
  assert capsys.readouterr().out.strip() == f'{public} trusted'
  other = S.write_trusted(paths[0].parent / 'other.json',
                          [S.public_bytes(ed25519.Ed25519PrivateKey.generate())])
  assert other.rotation == 0
  assert cli.main(['signer', str(paths[0]), '--trusted', str(paths[0].parent / 'other.json')]) == 1
  assert 'not trusted here' in capsys.readouterr().err
  unsigned = paths[0].parent / 'unsigned'
  unsigned.write_bytes(paths[0].read_bytes()[:-S.TRAILER_BYTES])
  assert cli.main(['signer', str(unsigned)]) == 1
  assert 'unsigned: not signed' in capsys.readouterr().err
  bad = paths[0].parent / 'bad'
  data = paths[0].read_bytes()
  bad.write_bytes(data[:20] + bytes([data[20] ^ 1]) + data[21:])
  assert cli.main(['signer', str(bad)]) == 1
  captured = capsys.readouterr()
  assert captured.out.strip() == f'{public} INVALID' and 'bad signature' in captured.err
