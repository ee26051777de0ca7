"""launch.py refuses bad configs before any work; sweeps print and load; configs validate."""
import os
import subprocess
import sys

import pytest

from experiments import sweep as sweep_lib
from experiments import validate
from experiments.configs import amnet
from experiments.configs import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(*args):
  return subprocess.run([sys.executable, 'launch.py', *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=120, env=dict(os.environ, JAX_PLATFORMS='cpu'))


@pytest.mark.parametrize('override, message', [
    ('--config.train.stepz=3', 'stepz'),                       # unknown key
    ('--config.train.steps=many', 'steps'),                    # wrong type
    ('--config.model.encoder.branches=main:sparse:1.5', 'model.encoder.branches'),  # bad value
    # a routing key on a one-branch encoder would silently do nothing
    ('--config.model.encoder.routing.lambda_amr=4', 'model.encoder.routing.lambda_amr'),
])
def test_bad_overrides_fail_before_any_work(tmp_path, override, message):
  out = _launch('--config=experiments/configs/tiny_rnnt.py', f'--workdir={tmp_path}/w', override)
  assert out.returncode != 0
  assert message in out.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_sweep_print_lists_one_command_per_point(tmp_path):
  out = _launch('--sweep=experiments/sweeps/amnet_cpu.py', f'--workdir={tmp_path}', '--sweep_print')
  assert out.returncode == 0, out.stderr
  lines = out.stdout.strip().splitlines()
  stage_1 = len(amnet.ROWS)           # every row, the AmNets from `full`
  assert len(lines) == stage_1 + 16     # and sixteen more from `full_continued`
  assert all(l.startswith('python launch.py --config=') for l in lines)
  assert f'--config.model.encoder.init_from={tmp_path}/full' in lines[1]
  assert all(f'init_from={tmp_path}/full_continued' in l for l in lines[stage_1:])


def test_every_sweep_point_loads_and_validates(tmp_path):
  names = {}
  for sweep_name in ('amnet_cpu', 'amnet_full', 'amnet_shipped', 'amnet_shipped_long',
                     'amnet_shipped_gradual', 'demo', 'base_levers'):
    sweep = sweep_lib.load_sweep(f'{ROOT}/experiments/sweeps/{sweep_name}.py', str(tmp_path))
    names[sweep_name] = [p['name'] for p in sweep['points']]
    assert len(set(names[sweep_name])) == len(names[sweep_name]), sweep_name
    for point in sweep['points']:
      sweep_lib.load_config(point['config'], point['overrides'])
  assert {'full_continued', 'amnet_mf3_2sided_upl', 'factorized20'} <= set(names['amnet_full'])
  # the shipped table's `full` row is the shipped model itself, never retrained
  shipped = sweep_lib.load_sweep(f'{ROOT}/experiments/sweeps/amnet_shipped.py', str(tmp_path))
  assert shipped['points'][0]['workdir'] == 'pretrained/base'
  # the gradual rows differ from the one-shot rows they are reported beside in the schedule only
  gradual = {p['name']: p for p in sweep_lib.load_sweep(
      f'{ROOT}/experiments/sweeps/amnet_shipped_gradual.py', str(tmp_path))['points']}
  table = {p['name']: p for p in shipped['points']}
  for name in ('pruned50_g32', 'amnet_sparse_g32'):
    one_shot = sweep_lib.load_config(gradual[name]['config'], gradual[name]['overrides'])
    # the one-shot rows are the shipped table's own, in its workdirs
    assert gradual[name]['workdir'] == f'workdirs/amnet_shipped/{name}'
    assert one_shot.to_dict() == sweep_lib.load_config(table[name]['config'],
                                                       table[name]['overrides']).to_dict()
    steps = sweep_lib.load_config(gradual[name + '_gradual']['config'],
                                  gradual[name + '_gradual']['overrides'])
    assert (one_shot.model.encoder.prune_every, steps.model.encoder.prune_every) == (0, 25)
    for cfg in (one_shot, steps):
      cfg.unlock()
      cfg.model.encoder.prune_every = cfg.model.encoder.prune_epochs = 0
    assert one_shot.to_dict() == steps.to_dict(), name


def test_every_shipped_config_validates():
  amnet_rows = [f'amnet.py:{row}' for row in amnet.ROWS]
  for spec in ['tiny_rnnt.py', 'base.py', 'bench_reference.py:base_lstm_ctc', *amnet_rows,
               'diffs.py', 'diffs.py:tiny', 'diffs.py:cpu',
               'demo.py:full', 'demo.py:amnet', 'demo.py:diffs', 'diffs.py:shipped',
               'diffs.py:shipped_amnet', 'amnet_shipped.py', 'amnet_shipped.py:amnet_sparse']:
    sweep_lib.load_config(f'{ROOT}/experiments/configs/{spec}')


@pytest.mark.parametrize('key, value, message', [
    ('data.bucket_seconds', (4.0, 2.0), 'increasing'),
    ('train.batch_size', 0, 'batch_size'),
    ('train.nan_policy', 'ignore', 'nan_policy'),
    ('model.encoder.branches', 'main:pruned:0.5', 'model.encoder.branches'),
    ('model.encoder.routing.force_branch', 'main', 'force_branch'),   # one branch: no routing
    ('model.encoder.routing.gumbel_hard', False, 'gumbel_hard'),
    ('train.frozen', 'decoder', 'train.frozen'),
    ('train.frozen', 'encoder,predictor,joint,ctc_head', 'train.frozen'),   # nothing to train
])
def test_validate_names_the_key(key, value, message):
  cfg = common.base_config()
  cfg.update_from_flattened_dict({key: value})
  with pytest.raises(validate.ConfigError, match=message):
    validate.check(cfg)


def test_load_config_refuses_unknown_override():
  with pytest.raises(validate.ConfigError, match='train.nope'):
    sweep_lib.load_config(f'{ROOT}/experiments/configs/tiny_rnnt.py', {'train.nope': 1})


@pytest.mark.parametrize('key, value, message', [
    ('diffs.budgets', '0.0,0.1', 'diffs.budgets'),
    ('diffs.budgets', '1.5', 'diffs.budgets'),
    ('diffs.methods', 'sparse,zip', 'diffs.methods'),
    ('diffs.prune_every', -1, 'diffs.prune_every'),
    ('diffs.prune_every', 200, 'diffs.prune_rounds'),          # 2 rounds of 200 > 400 steps
    ('diffs.eval_split', 'dev', 'diffs.eval_split'),
    ('diffs.sparse_mask', 'random', 'diffs.sparse_mask'),
    ('diffs.signing_key', '/nonexistent/maker.key', 'diffs.signing_key: .*no such private key'),
    ('model.encoder.branches', 'slow:dense,fast:sparse:1.5', 'branches'),
    ('model.encoder.routing.loss_variant', 'latency', 'loss_variant'),
    ('model.encoder.routing.force_branch', 'medium', 'force_branch'),
])
def test_method_sections_are_validated(key, value, message):
  spec = 'diffs.py' if key.startswith('diffs') else 'amnet.py:amnet_sparse'
  with pytest.raises(validate.ConfigError, match=message):
    sweep_lib.load_config(f'{ROOT}/experiments/configs/{spec}', {key: value})


def test_a_diff_of_a_sparse_branch_model_is_refused():
  # its masks are another collection than the params a diff carries
  with pytest.raises(validate.ConfigError, match='pruning masks'):
    sweep_lib.load_config(f'{ROOT}/experiments/configs/diffs.py:shipped_amnet',
                          {'model.encoder.branches': 'slow:dense,fast:sparse:0.1'})


def test_the_shipped_diff_config_trains_at_the_rates_its_recorded_grid_chose():
  # A rate edited in the config without rerunning the grid (or a grid rerun without editing the
  # config) would leave RESULTS.md describing rates the command no longer trains at.
  import csv  # pylint: disable=g-import-not-at-top
  from diffs import chain  # pylint: disable=g-import-not-at-top
  cfg = sweep_lib.load_config(f'{ROOT}/experiments/configs/diffs.py:shipped', {})
  rates = chain.learning_rates(cfg.diffs)
  with open(f'{ROOT}/docs/diffs_shipped/lr2pct/lr_choice_test_seen.csv', encoding='utf-8') as f:
    chosen = {r['method']: float(r['lr']) for r in csv.DictReader(f) if r['chosen'] == 'yes'}
  assert chosen.keys() == {'hashed', 'lowrank'}
  for method, lr in chosen.items():
    assert rates[method] == [lr], method
