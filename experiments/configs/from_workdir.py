"""The config a model was trained with, read back from its workdir or export: what
`--mode=transcribe` and `--mode=eval` use when no `--config` is given. As a config file it takes
the workdir as its argument, so that overrides still apply:

  python launch.py --config=experiments/configs/from_workdir.py:pretrained/base \
      --workdir=pretrained/base --mode=transcribe --audio=my.wav --config.eval.beam_width=4

Training writes `WORKDIR/config.json` and an export holds its own `config.json`. The file is laid
over this code's defaults, so a config written before a key existed gets that key's default
(which is what the model was trained with: a new key's default keeps the old behaviour); a key
this code does not know is refused, naming it.
"""
import json
import os

import ml_collections

from experiments.configs import common

CONFIG_FILE = 'config.json'


class WorkdirConfigError(ValueError):
  """A workdir without a usable config.json."""


def path_of(workdir: str) -> str:
  return os.path.join(workdir, CONFIG_FILE)


def load(workdir: str) -> ml_collections.ConfigDict:
  """The config of the model in `workdir` (a training workdir or an export)."""
  path = path_of(workdir)
  if not os.path.isfile(path):
    raise WorkdirConfigError(
        f'{path}: no such file: --workdir={workdir} holds neither a training run\'s nor an '
        'exported model\'s config; pass --config=CONFIG_FILE')
  try:
    with open(path, encoding='utf-8') as f:
      saved = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise WorkdirConfigError(f'{path}: not a JSON config ({e})') from None
  if not isinstance(saved, dict):
    raise WorkdirConfigError(f'{path}: not a JSON object')
  cfg = common.base_config()
  _overlay(cfg, saved, path, '')
  from asr import export  # pylint: disable=g-import-not-at-top
  if export.is_exported(workdir):
    # An export's tokenizer is its own file, wherever the folder was copied to.
    cfg.data.tokenizer = export.tokenizer_spec(workdir)
  return cfg


def _overlay(cfg, saved: dict, path: str, prefix: str):
  for key, value in saved.items():
    name = f'{prefix}{key}'
    if key not in cfg:
      raise WorkdirConfigError(f'{path}: key {name!r} is not a config key of this code (a '
                               'config from another version?)')
    default = cfg[key]
    if isinstance(default, ml_collections.ConfigDict):
      if not isinstance(value, dict):
        raise WorkdirConfigError(f'{path}: {name} is {value!r}, not a section')
      _overlay(default, value, path, name + '.')
      continue
    cfg[key] = _as_type(default, _tuples(value), path, name)


def _tuples(value):
  """JSON has lists where the config had tuples (bucket_seconds, loss_shapes)."""
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _as_type(default, value, path: str, name: str):
  if isinstance(default, bool) or isinstance(value, bool):
    if isinstance(default, bool) and isinstance(value, bool):
      return value
  elif isinstance(default, float) and isinstance(value, (int, float)):
    return float(value)
  elif default is None or isinstance(value, type(default)):
    return value
  raise WorkdirConfigError(f'{path}: {name} is {value!r}; this code expects a '
                           f'{type(default).__name__} like {default!r}')


def get_config(workdir: str = ''):
  if not workdir:
    raise WorkdirConfigError('from_workdir.py needs the workdir as its argument: '
                             '--config=experiments/configs/from_workdir.py:WORKDIR')
  return load(workdir)
