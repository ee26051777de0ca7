"""Tests for diffs.signing: key files, signatures over every byte, trusted keys and rotation."""
import json
import os
import stat

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import ed25519
import pytest

from diffs import cli
from diffs import signing as S


def test_key_pair_files(tmp_path, capsys):
  path = tmp_path / 'maker.key'
  assert cli.main(['keygen', str(path)]) == 0
  public_hex = capsys.readouterr().out.strip()
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
  assert (tmp_path / 'maker.key.pub').read_text().strip() == public_hex
  key = S.load_private_key(path)
  assert S.public_bytes(key).hex() == public_hex == S.load_public_key(f'{path}.pub').hex()
  # the key signs what the cryptography library verifies (an independent check of the trailer)
  signed = S.sign(b'message', key, 'package')
  ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
      signed[-64:], S.CONTEXTS['package'] + signed[:-64])
  assert signed[:-S.TRAILER_BYTES] == b'message' and signed[-96:-64].hex() == public_hex
  before = path.read_bytes()
  assert cli.main(['keygen', str(path)]) == 1                 # never overwrites a key
  assert 'already exists' in capsys.readouterr().err and path.read_bytes() == before
  (tmp_path / 'junk.key').write_text('not a key')
  ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
      serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
      serialization.NoEncryption())
  (tmp_path / 'ec.key').write_bytes(ec_key)
  (tmp_path / 'short.pub').write_text('abcd\n')
  for load, name, match in [(S.load_private_key, 'junk.key', 'not an unencrypted PEM'),
                            (S.load_private_key, 'ec.key', 'not an Ed25519 private key'),
                            (S.load_private_key, 'missing.key', 'cannot read private key'),
                            (S.load_public_key, 'short.pub', 'not an Ed25519 public key')]:
    with pytest.raises(S.SignatureError, match=match) as error:
      load(tmp_path / name)
    assert name in str(error.value) and '\n' not in str(error.value)


def test_signature_covers_every_byte():
  key, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
  trusted = [S.public_bytes(key)]
  message = bytes(range(256)) * 2
  signed = S.sign(message, key, 'package')
  assert S.verify(signed, trusted, 'package', 'f') == message
  for position in range(len(signed)):                        # every single byte, trailer too
    damaged = bytearray(signed)
    damaged[position] ^= 0x01
    with pytest.raises(S.SignatureError, match='^f: (bad signature|not signed|signed by key)'):
      S.verify(bytes(damaged), trusted, 'package', 'f')
  for cut in range(1, S.TRAILER_BYTES + 2):
    with pytest.raises(S.SignatureError, match='not signed'):
      S.verify(signed[:-cut], trusted, 'package', 'f')
  # a signature over a prefix of the file does not vouch for the rest
  partial = S.sign(message[:100], key, 'package')
  spliced = partial[:100] + message[100:] + partial[100:]
  with pytest.raises(S.SignatureError, match='bad signature'):
    S.verify(spliced, trusted, 'package', 'f')
  with pytest.raises(S.SignatureError, match='bad signature'):   # another kind of file
    S.verify(S.sign(message, key, 'manifest'), trusted, 'package', 'f')
  with pytest.raises(S.SignatureError, match='not trusted'):
    S.verify(S.sign(message, other, 'package'), trusted, 'package', 'f')
  assert S.signer(S.sign(message, other, 'package'), 'package', 'f') == (S.public_bytes(other),
                                                                         True)
  assert S.signer(spliced, 'package', 'f') == (S.public_bytes(key), False)
  with pytest.raises(InvalidSignature):    # the reference verifier agrees with the spliced refusal
    key.public_key().verify(spliced[-64:], S.CONTEXTS['package'] + spliced[:-64])


def test_trusted_keys_and_rotation(tmp_path, capsys):
  old_path, new_path = tmp_path / 'old.key', tmp_path / 'new.key'
  old_pub, new_pub = S.write_key_pair(old_path), S.write_key_pair(new_path)
  old, new = S.load_private_key(old_path), S.load_private_key(new_path)
  keys = tmp_path / 'trusted.json'
  assert cli.main(['trust', str(keys), f'{old_path}.pub']) == 0
  assert S.load_trusted(keys) == S.TrustedKeys(0, frozenset([old_pub]))
  assert json.loads(keys.read_text()) == {'format': 'ndiff-trusted-keys', 'rotation': 0,
                                          'keys': [old_pub.hex()]}
  message = b'an update'
  with pytest.raises(S.SignatureError, match='not trusted'):
    S.verify(S.sign(message, new, 'package'), S.load_trusted(keys), 'package', 'p')
  rotation = tmp_path / 'rotation1'
  assert cli.main(['rotation', '--key', str(old_path), '--number', '1', '--out', str(rotation),
                   f'{new_path}.pub']) == 0
  # refused: signed by a key the device does not trust, altered, or not newer
  forged = tmp_path / 'forged'
  S.make_rotation(forged, [new_pub], 5, new)
  altered = tmp_path / 'altered'
  data = rotation.read_bytes()
  altered.write_bytes(data.replace(b'"rotation": 1', b'"rotation": 7'))
  for bad, match in [(forged, 'not trusted'), (altered, 'bad signature')]:
    before = keys.read_bytes()
    assert cli.main(['rotate', str(bad), '--trusted', str(keys)]) == 1
    err = capsys.readouterr().err
    assert match in err and err.count('\n') == 1 and keys.read_bytes() == before
  assert cli.main(['rotate', str(rotation), '--trusted', str(keys)]) == 0
  assert S.load_trusted(keys) == S.TrustedKeys(1, frozenset([new_pub]))
  assert S.verify(S.sign(message, new, 'package'), S.load_trusted(keys), 'package', 'p')
  with pytest.raises(S.SignatureError, match='not trusted'):      # the old key is retired
    S.verify(S.sign(message, old, 'package'), S.load_trusted(keys), 'package', 'p')
  # a rotation cannot be replayed, even one the now trusted key signs
  replay = tmp_path / 'replay'
  S.make_rotation(replay, [old_pub], 1, new)
  with pytest.raises(S.SignatureError, match='rotation 1 is not newer than the installed '
                     'rotation 1'):
    S.rotate(keys, replay)
  with pytest.raises(S.SignatureError, match='not trusted'):      # old key's rotation, replayed
    S.rotate(keys, rotation)
  with pytest.raises(S.SignatureError, match='empty key list'):
    S.make_rotation(tmp_path / 'empty', [], 2, new)
  for text, match in [('{"format": "ndiff-trusted-keys", "rotation": 0, "keys": []}', 'empty'),
                      ('{"format": "ndiff-trusted-keys", "rotation": -1, "keys": []}', 'rotation'),
                      ('{"format": "x", "rotation": 0, "keys": []}', 'not a ndiff-trusted-keys'),
                      ('{"format": "ndiff-trusted-keys", "rotation": 0, "keys": ["ab"]}',
                       'not an Ed25519 public key'), ('[', 'not a ndiff-trusted-keys')]:
    (tmp_path / 'bad.json').write_text(text)
    with pytest.raises(S.SignatureError, match=match) as error:
      S.load_trusted(tmp_path / 'bad.json')
    assert 'bad.json' in str(error.value)


def test_maker_key_chain_local_or_configured(tmp_path):
  chain_local = tmp_path / 'chain' / 'maker.key'
  first = S.maker_key('', str(chain_local))
  assert S.public_bytes(S.maker_key('', str(chain_local))) == S.public_bytes(first)
  assert S.load_public_key(f'{chain_local}.pub') == S.public_bytes(first)
  configured = S.maker_key(str(chain_local), str(tmp_path / 'unused.key'))
  assert S.public_bytes(configured) == S.public_bytes(first)
  assert not (tmp_path / 'unused.key').exists()
  with pytest.raises(S.SignatureError, match='missing.key: cannot read'):
    S.maker_key(str(tmp_path / 'missing.key'), str(chain_local))
