"""Sweeps: a file listing config points, run one after another or printed for a scheduler.

A sweep file defines `get_sweep(root) -> dict(report=KIND, points=[...])`; each point is
`dict(name=..., config='path.py[:arg]', overrides={'train.steps': 100, ...})`. Point `name`
trains in `root/name`; `{root}` in an override value is replaced by the sweep's root, which is
how an AmNet row names the full model it starts from. Points already finished (their
`train_summary.json` reached the configured steps) are skipped. Other keys go to the report
(the AmNet report's `routing_row`: the row its routing still shows; `ablation_rows`: AmNets
whose branches it also evaluates alone; `stream_utterances`: how many test utterances it streams
for the timing columns, 0 for none).
"""
import importlib.util
import json
import os
import shlex

import ml_collections

from asr import export
from experiments import validate


def _load_module(path: str, name: str):
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: no such config or sweep file')
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(spec: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
  """'experiments/configs/amnet.py:full' + {'train.steps': 10} -> a locked, validated config."""
  path, _, arg = spec.partition(':')
  module = _load_module(path, 'experiment_config')
  cfg = module.get_config(arg) if arg else module.get_config()
  cfg.lock()                                   # an override cannot add a key
  apply_overrides(cfg, overrides or {}, spec)
  validate.check(cfg)
  return cfg


def apply_overrides(cfg, overrides: dict, origin: str):
  """{'train.steps': 10, ...} into a locked config; a bad key or type fails naming the key."""
  for key, value in overrides.items():
    try:
      cfg.update_from_flattened_dict({key: value})
    except (KeyError, AttributeError):
      raise validate.ConfigError(f'config.{key}: unknown key (from {origin})') from None
    except TypeError as e:
      raise validate.ConfigError(f'config.{key}: {value!r} has the wrong type ({e}; from '
                                 f'{origin})') from None


def load_sweep(path: str, root: str) -> dict:
  sweep = _load_module(path, 'experiment_sweep').get_sweep(root)
  for point in sweep['points']:
    point['overrides'] = {k: (v.replace('{root}', root) if isinstance(v, str) else v)
                          for k, v in point.get('overrides', {}).items()}
    # A point may name a model trained elsewhere (e.g. an exported one): it is not retrained.
    point['workdir'] = point.get('workdir') or os.path.join(root, point['name'])
  names = [p['name'] for p in sweep['points']]
  if sweep.get('routing_row') and sweep['routing_row'] not in names:
    raise ValueError(f'{path}: routing_row {sweep["routing_row"]!r} is not a point ({names})')
  unknown = [r for r in sweep.get('ablation_rows', ()) if r not in names]
  if unknown:
    raise ValueError(f'{path}: ablation_rows {unknown} are not points ({names})')
  return sweep


def is_finished(cfg, workdir: str) -> bool:
  if export.is_exported(workdir):      # a shipped model is trained by definition
    return True
  path = os.path.join(workdir, 'train_summary.json')
  if not os.path.exists(path):
    return False
  with open(path) as f:
    return json.load(f).get('steps') == cfg.train.steps


def commands(sweep: dict) -> list[str]:
  """One launch command per point, for a cluster or TPU scheduler (dependencies in order)."""
  lines = []
  for p in sweep['points']:
    args = [f'--config={p["config"]}', f'--workdir={p["workdir"]}']
    args += [f'--config.{k}={v}' for k, v in p['overrides'].items()]
    lines.append('python launch.py ' + ' '.join(shlex.quote(a) for a in args))
  return lines


def run(sweep: dict, train_fn, log=print):
  for i, p in enumerate(sweep['points']):
    cfg = load_config(p['config'], p['overrides'])
    if is_finished(cfg, p['workdir']):
      log(f'[sweep {i + 1}/{len(sweep["points"])}] {p["name"]}: finished, skipped')
      continue
    log(f'[sweep {i + 1}/{len(sweep["points"])}] {p["name"]}: training in {p["workdir"]}')
    train_fn(cfg, p['workdir'])
