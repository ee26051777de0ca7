"""Device-side command line for update packages (numpy only, no JAX).

  python -m diffs.cli inspect PACKAGE [--json]
  python -m diffs.cli apply PACKAGE --params MODEL.npz [--out NEW.npz]   (default: in place)
  python -m diffs.cli fingerprint MODEL.npz

A refused package prints one line naming the file and the reason, and exits with status 1; the
params file is then untouched.
"""
import argparse
import json
import sys

from diffs import package


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m diffs.cli', description=__doc__.split('\n')[0])
  commands = parser.add_subparsers(dest='command', required=True)
  show = commands.add_parser('inspect', help='print a package header and per-leaf sizes')
  show.add_argument('package')
  show.add_argument('--json', action='store_true', help='machine-readable output')
  run = commands.add_parser('apply', help='apply a package to params stored as .npz')
  run.add_argument('package')
  run.add_argument('--params', required=True, help='.npz with "/"-joined parameter paths')
  run.add_argument('--out', help='where to write the new params (default: --params, atomically)')
  fp = commands.add_parser('fingerprint', help='fingerprint of params stored as .npz')
  fp.add_argument('params')
  args = parser.parse_args(argv)
  try:
    if args.command == 'inspect':
      info = package.inspect(args.package)
      print(json.dumps(info, indent=1) if args.json else package.format_inspect(info))
    elif args.command == 'apply':
      result = package.apply_file(args.package, args.params, args.out or args.params)
      print(f'applied {args.package}: {args.out or args.params} is now {result}')
    else:
      print(package.fingerprint(package.load_params(args.params)))
  except package.PackageError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
