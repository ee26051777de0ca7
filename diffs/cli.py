"""Command line for update packages: the device's commands (numpy and cryptography, no JAX) and
the maker's key, manifest and rotation commands.

Device:
  python -m diffs.cli apply PACKAGE --params MODEL.npz --trusted KEYS.json [--out NEW.npz]
  python -m diffs.cli version MODEL.npz            update number and fingerprint of a device
  python -m diffs.cli fingerprint MODEL.npz
  python -m diffs.cli inspect PACKAGE [--json] [--trusted KEYS.json]
  python -m diffs.cli signer PACKAGE [--trusted KEYS.json]
  python -m diffs.cli plan MANIFEST --params MODEL.npz --trusted KEYS.json
  python -m diffs.cli rotate ROTATION --trusted KEYS.json
Maker:
  python -m diffs.cli keygen MAKER.key             also writes MAKER.key.pub
  python -m diffs.cli trust KEYS.json MAKER.key.pub ...       a device's initial trusted keys
  python -m diffs.cli manifest --key MAKER.key --out CHAIN.manifest PACKAGE ...
  python -m diffs.cli rotation --key MAKER.key --number N --out ROTATION NEW.pub ...
  python -m diffs.cli binary-delta OLD.npz NEW.npz      what a generic binary delta would ship

A refused package, manifest, rotation or key prints one line naming the file and the reason and
exits with status 1; the params and trusted-keys files are then untouched. docs/DESIGN.md,
"Update packages: format and threat model", says what the signatures and numbers protect.
"""
import argparse
import json
import sys

from diffs import device
from diffs import manifest
from diffs import package
from diffs import signing

_ERRORS = (package.PackageError, signing.SignatureError, manifest.ManifestError)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='python -m diffs.cli', description=' '.join(__doc__.split('\n\n')[0].split()),
                                   epilog=__doc__.split('\n\n', 1)[1],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest='command', required=True)
  trusted_help = 'trusted-keys file (`trust`, `rotate`) holding the maker\'s public key(s)'

  run = commands.add_parser('apply', help='verify a package and apply it to a device\'s .npz; '
                            'refuses one not signed by a trusted key or not newer than the '
                            'device\'s update number')
  run.add_argument('package')
  run.add_argument('--params', required=True, help='.npz with "/"-joined parameter paths and '
                   'the device\'s update number (none: update 0)')
  run.add_argument('--trusted', required=True, help=trusted_help)
  run.add_argument('--out', help='where to write the new params (default: --params, atomically)')
  version = commands.add_parser('version', help='update number and fingerprint of a device\'s '
                                '.npz')
  version.add_argument('params')
  fp = commands.add_parser('fingerprint', help='fingerprint of params stored as .npz')
  fp.add_argument('params')
  show = commands.add_parser('inspect', help='print a package header and per-leaf sizes')
  show.add_argument('package')
  show.add_argument('--json', action='store_true', help='machine-readable output')
  show.add_argument('--trusted', help=trusted_help + ' (default: any valid signature)')
  who = commands.add_parser('signer', help='the public key that signed a package, and whether '
                            'the signature is valid (and trusted, with --trusted)')
  who.add_argument('package')
  who.add_argument('--trusted', help=trusted_help)
  plan = commands.add_parser('plan', help='the packages of a signed chain manifest a device '
                             'must fetch, in order')
  plan.add_argument('manifest')
  plan.add_argument('--params', required=True, help='the device\'s .npz')
  plan.add_argument('--trusted', required=True, help=trusted_help)
  rotate = commands.add_parser('rotate', help='install a signed key rotation: replaces the '
                               'trusted keys if a trusted key signed it and its number is higher')
  rotate.add_argument('rotation')
  rotate.add_argument('--trusted', required=True, help=trusted_help + ', rewritten atomically')

  keygen = commands.add_parser('keygen', help='make a maker key pair: KEY (private, mode 0600, '
                               'never commit it) and KEY.pub (64 hex digits)')
  keygen.add_argument('key')
  trust = commands.add_parser('trust', help='write a device\'s initial trusted-keys file')
  trust.add_argument('out')
  trust.add_argument('public_keys', nargs='+', metavar='PUB', help='.pub files')
  make = commands.add_parser('manifest', help='sign the manifest of a chain\'s packages')
  make.add_argument('packages', nargs='+', metavar='PACKAGE', help='in chain order')
  make.add_argument('--key', required=True, help='the maker\'s private key (signed the packages)')
  make.add_argument('--out', required=True)
  make.add_argument('--chain', default='', help='a name for the chain')
  rotation = commands.add_parser('rotation', help='sign a key rotation with a key devices trust '
                                 'now')
  rotation.add_argument('public_keys', nargs='+', metavar='PUB', help='the new keys\' .pub files')
  rotation.add_argument('--key', required=True, help='a private key the devices trust now')
  rotation.add_argument('--number', required=True, type=int,
                        help='rotation number, higher than the one devices have installed')
  rotation.add_argument('--out', required=True)
  binary = commands.add_parser('binary-delta', help='bytes of NEW\'s params file raw, with zstd, '
                               'as a zstd delta against OLD\'s and as a bsdiff4 patch (the '
                               'baseline a package is compared with)')
  binary.add_argument('old', help='params .npz (a device\'s or an exported model\'s)')
  binary.add_argument('new')
  return parser


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  try:
    _run(args)
  except _ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


def _run(args) -> None:
  trusted = signing.load_trusted(args.trusted) if getattr(args, 'trusted', None) else None
  if args.command == 'apply':
    result = device.apply_update(args.package, args.params, trusted, args.out)
    print(f'applied {args.package}: {args.out or args.params} is now update {result["update"]} '
          f'(was {result["previous_update"]}), {result["fingerprint"]}')
  elif args.command == 'version':
    fingerprint, update = device.state(args.params)
    print(f'update {update} {fingerprint}')
  elif args.command == 'fingerprint':
    print(package.fingerprint(package.load_params(args.params)))
  elif args.command == 'inspect':
    info = package.inspect(args.package, trusted)
    print(json.dumps(info, indent=1) if args.json else package.format_inspect(info))
  elif args.command == 'signer':
    public, valid = package.signer(args.package)
    if trusted is not None:
      package.open_package(package.read_package(args.package), trusted, args.package)
    status = 'trusted' if trusted is not None else ('valid' if valid else 'INVALID')
    print(f'{public.hex()} {status}')
    if not valid:
      raise package.PackageError(f'{args.package}: bad signature by key {signing.key_id(public)}')
  elif args.command == 'plan':
    doc = manifest.load(args.manifest, trusted)
    fingerprint, update = device.state(args.params)
    todo = manifest.plan(doc, fingerprint, update, args.manifest)
    if not todo:
      print(f'up to date at update {update}')
    for entry in todo:
      print(f'update {entry["update"]}: {entry["file"]} ({entry["bytes"]} bytes, sha256 '
            f'{entry["sha256"]})')
  elif args.command == 'rotate':
    new = signing.rotate(args.trusted, args.rotation)
    print(f'{args.trusted}: rotation {new.rotation}, keys '
          + ' '.join(sorted(signing.key_id(k) for k in new.keys)))
  elif args.command == 'keygen':
    print(signing.write_key_pair(args.key).hex())
  elif args.command == 'trust':
    signing.write_trusted(args.out, [signing.load_public_key(p) for p in args.public_keys])
  elif args.command == 'manifest':
    doc = manifest.make(args.out, args.packages, signing.load_private_key(args.key), args.chain)
    print(f'{args.out}: {len(doc["packages"])} packages')
  elif args.command == 'binary-delta':
    # Imported here: the device's commands need no zstandard.
    from diffs import binary_delta  # pylint: disable=g-import-not-at-top
    sizes = binary_delta.sizes(package.load_params(args.old), package.load_params(args.new))
    print(f'{args.new} from {args.old}: {binary_delta.format_sizes(sizes)}')
  else:
    signing.make_rotation(args.out, [signing.load_public_key(p) for p in args.public_keys],
                          args.number, signing.load_private_key(args.key))


if __name__ == '__main__':
  sys.exit(main())
