"""A tiny chain of diff updates on synthetic data: train, export, apply, continue."""
import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from amortized import encoder as amnet
from asr import features
from asr import model as model_lib
from asr import text
from asr import train as train_lib
from diffs import chain
from diffs import fisher
from diffs import package
from diffs import signing
from tests import helpers


def tiny_model(cfg):
  """The RNN-T of `helpers.tiny_config`: the one encoder family with its one dense branch."""
  m = cfg.model
  encoder = amnet.from_config(cfg, features.feature_dim(cfg.frontend),
                              features.frame_seconds(cfg.frontend))
  return model_lib.RNNT(encoder=encoder,
                        vocab_size=text.CharTokenizer.vocab_size,
                        pred_embed_dim=m.pred_embed_dim, pred_units=m.pred_units,
                        joint_dim=m.joint_dim, ctc_head=m.ctc_weight > 0)


@pytest.fixture(scope='module')
def base(tmp_path_factory):
  root = tmp_path_factory.mktemp('base')
  cfg = helpers.tiny_config(**{'train.steps': 4})
  data = helpers.tiny_dataset(cfg)
  model = tiny_model(cfg)
  train_lib.train(cfg, str(root), model, data, log=lambda *_: None)
  return cfg, model, chain.to_numpy(train_lib.load_params(str(root))), str(root)


def _diffs_config(cfg, prune_every=0, sparse_mask='magnitude', **overrides):
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.diffs = ml_collections.ConfigDict(dict(dict(
      min_ndim=1, prune_every=prune_every, prune_rounds=1 + (prune_every > 0),
      value_dtype='fp16', steps_per_update=6, lr=1e-2, warmup_steps=1,
      sparse_mask=sparse_mask, fisher_batches=2), **overrides))
  return cfg


def _update_config(cfg, prune_every=0, sparse_mask='magnitude'):
  return chain.update_config(_diffs_config(cfg, prune_every, sparse_mask))


@pytest.mark.parametrize('method, prune_every', [
    ('sparse', 0), ('sparse', 2), ('hashed', 0), ('topk', 0)])
def test_two_updates_ship_packages_the_device_can_apply(base, tmp_path, method, prune_every):
  cfg, model, base_params, base_dir = base
  ucfg = _update_config(cfg, prune_every)
  budget = chain.budget_for(method, base_params, 0.1, 'fp16', 1)
  full_bytes = package.full_model_bytes(base_params, 'fp16')
  device = base_params
  for k in (1, 2):
    data = helpers.tiny_dataset(cfg, 8, seed=k)
    workdir = str(tmp_path / f'update_{k}')
    info = chain.run_update(ucfg, workdir, model, method, device, budget, data,
                            os.path.join(base_dir, 'feature_stats.json'), k,
                            log=lambda *_: None)
    # the device's params are exactly what applying the package file to the old params gives;
    # the package is signed by the chain-local maker key, beside the updates' directories
    trusted = [signing.load_public_key(tmp_path / 'maker.key.pub')]
    again = package.apply(info['package'], device, trusted=trusted)
    for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(info['params'])):
      np.testing.assert_array_equal(a, b)
    changed = sum(int((np.asarray(a) != np.asarray(b)).sum()) for a, b in zip(
        jax.tree_util.tree_leaves(info['params']), jax.tree_util.tree_leaves(device)))
    assert changed > 0
    if method in ('sparse', 'topk'):
      assert info['stored_values'] == budget.entries     # exactly the budget
    assert info['bytes'] < 0.2 * full_bytes
    device = info['params']
  # the chain applied out of order (update 2 straight onto the base) is refused
  with pytest.raises(package.PackageError, match='is for base'):
    package.apply(info['package'], base_params, trusted=trusted)
  # a finished update is read back, not retrained
  again = chain.run_update(ucfg, workdir, model, method, None, budget, None, '', 2)
  assert again['bytes'] == info['bytes']


def test_fisher_mask_trains_the_top_squared_gradients(base, tmp_path):
  cfg, model, base_params, base_dir = base
  ucfg = _update_config(cfg, sparse_mask='fisher')
  data = helpers.tiny_dataset(cfg, 8, seed=1)
  stats_path = os.path.join(base_dir, 'feature_stats.json')
  stats = train_lib.feature_stats(data, ucfg.frontend, base_dir)
  scores = fisher.squared_gradients(ucfg, model, base_params, data, stats, 2)
  # the sum of each batch's squared gradient, batch by batch
  expected = jax.tree.map(np.zeros_like, scores)
  # One batch's gradient, compiled on its own (op by op it takes longer than the whole chain).
  grad_fn = jax.jit(jax.grad(lambda p, batch: train_lib.compute_loss(
      model, {'params': p}, batch, stats, ucfg, jax.random.key(ucfg.seed), 0, False)[0]))
  for i in range(2):
    grads = grad_fn(base_params, data.train_batch(i, ucfg.train.batch_size, ucfg.seed))
    expected = jax.tree.map(lambda e, g: e + np.asarray(g) ** 2, expected, grads)
  for a, b in zip(jax.tree_util.tree_leaves(scores), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-8)    # summed here vs in fisher.py
  # brute force: the budget's largest scores over every leaf (min_ndim=1: all are eligible)
  budget = chain.budget_for('sparse', base_params, 0.1, 'fp16', 1)
  flat = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(scores)])
  kept = np.zeros(flat.size, bool)
  kept[np.argsort(-flat, kind='stable')[:budget.entries]] = True
  info = chain.run_update(ucfg, str(tmp_path / 'update_1'), model, 'sparse', base_params, budget,
                          data, stats_path, 1, log=lambda *_: None)
  assert info['stored_values'] == budget.entries
  changed = np.concatenate([np.ravel(np.asarray(a) != np.asarray(b)) for a, b in zip(
      jax.tree_util.tree_leaves(info['params']), jax.tree_util.tree_leaves(base_params))])
  assert changed.any() and not (changed & ~kept).any()   # trained only inside the mask


def test_replay_sample_is_even_and_deterministic():
  a, b = list(range(100)), list(range(100, 130))
  s1 = chain.replay_sample([a, b], 20, seed=3)
  s2 = chain.replay_sample([a, b], 20, seed=3)
  got = [s1[i] for i in range(len(s1))]
  assert got == [s2[i] for i in range(len(s2))] and len(set(got)) == 20
  assert sum(x < 100 for x in got) == 10


def test_a_lowrank_budget_below_rank_one_is_reported_before_training():
  rng = np.random.default_rng(0)
  base = {'w': rng.normal(size=(30, 20)).astype(np.float32),      # rank 1 costs 30 + 20
          'v': rng.normal(size=(10, 40)).astype(np.float32),      # and 10 + 40
          'b': np.zeros(20, np.float32)}                          # 20 dense 1-D entries
  fits = chain.Budget(0.1, 0, entries=120)
  short = chain.Budget(0.01, 0, entries=119)
  assert chain.infeasible('lowrank', base, fits, min_ndim=1) is None
  assert 'does not fit rank 1' in chain.infeasible('lowrank', base, short, min_ndim=1)
  for method in ('sparse', 'hashed', 'topk'):
    assert chain.infeasible(method, base, short, min_ndim=1) is None


def test_run_chain_rows_layout_replay_and_resume(base, tmp_path):
  cfg, model, _, base_dir = base
  cfg = _diffs_config(cfg, methods='sparse', budgets='0.1', updates=2, steps_per_update=2,
                      replay_fraction=0.5, eval_split='test_seen', eval_utterances=3)
  assert chain.domains(2) == ['base', 'update_1', 'update_2']
  domains = chain.domains(2)
  sources = {name: helpers.synthetic_examples(8, seed) for seed, name in enumerate(domains)}
  tests = {name: helpers.tiny_dataset(cfg, 4, seed=10 + seed) for seed, name in enumerate(domains)}
  test_domain = {id(dataset): name for name, dataset in tests.items()}
  calls = []

  def evaluator(variables, dataset, stats, limit):
    calls.append((test_domain[id(dataset)], limit))
    return {'wer': 0.25, 'cer': 0.125}

  lines = []
  run = lambda log: chain.run_chain(cfg, str(tmp_path), model=model, base_dir=base_dir,
                                    tests=tests, sources=sources, buckets=tests['base'].buckets,
                                    evaluator=evaluator, log=log)
  rows, skipped = run(lines.append)
  assert skipped == []
  assert [(r['method'], r['budget'], r['update']) for r in rows] == [
      ('base model', '-', 0), ('sparse', '10%', 1), ('sparse', '10%', 2)]
  assert all(r['wer_new'] == r['wer_base'] == 25.0 and r['cer_new'] == 12.5 for r in rows)
  # the base model against update_1, then each update on its new domain and on the base's
  assert calls[:2] == [('update_1', 3), ('base', 3)]
  assert calls[2:] == [('update_1', 3), ('base', 3), ('update_2', 3), ('base', 3)]
  # replay: half the new domain's size, from every earlier domain
  assert [line for line in lines if 'utterances' in line] == [
      f'[{name}] update {k}/2: 12 utterances (4 replayed)'
      for name in ('sparse@0.1',) for k in (1, 2)]
  for name in ('sparse@0.1',):
    for k in (1, 2):
      workdir = tmp_path / 'chains' / name / f'update_{k}'
      row = next(r for r in rows if r['update'] == k and name.startswith(r['method']))
      assert os.path.getsize(workdir / f'update_{k}.diff') == row['bytes']
      assert sorted(json.load(open(workdir / 'eval.json'))) == sorted(
          [f'update_{k}_test_seen', 'base_test_seen'])
  assert sorted(json.load(open(tmp_path / 'base_eval.json'))) == ['base_test_seen',
                                                                 'update_1_test_seen']
  # each row's training time is its update's own, as asr.train summed it
  for r in rows[1:]:
    summary = tmp_path / 'chains' / 'sparse@0.1' / f'update_{r["update"]}' / 'train'
    assert r['train_s'] == json.load(open(summary / 'train_summary.json'))['train']['wall_s']
    assert r['train_s'] > 0
  # a finished run is read back: no evaluation and no training again
  calls.clear()
  again, _ = run(lambda *_: None)
  assert again == rows and calls == []
  # an update recorded before its training time was: the time is read back and kept
  record_path = tmp_path / 'chains' / 'sparse@0.1' / 'update_1' / 'update.json'
  record = json.load(open(record_path))
  del record['train_s']
  record_path.write_text(json.dumps(record))
  again, _ = run(lambda *_: None)
  assert again == rows and json.load(open(record_path))['train_s'] == rows[1]['train_s']


def _final_lr(workdir):
  with open(os.path.join(workdir, 'train', 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f if '"kind": "train"' in line][-1]['lr']


def test_each_method_trains_at_its_own_rates_and_a_resume_at_another_is_refused(base, tmp_path):
  # full at a grid of two rates (one chain each), sparse at diffs.lr
  cfg, model, _, base_dir = base
  cfg = _diffs_config(cfg, methods='sparse,full', budgets='0.1', updates=1, steps_per_update=2,
                      replay_fraction=0.0, eval_split='test', eval_utterances=2,
                      lr=1e-3, lrs='full=4e-3|8e-3')
  assert chain.learning_rates(cfg.diffs) == {'sparse': [1e-3], 'full': [4e-3, 8e-3]}
  for bad, match in (('hashd=1e-2', "'hashd'"), ('sparse=1e-2|x', 'method=lr'),
                     ('sparse=1e-2|1e-2', 'distinct'), ('sparse=0', '> 0')):
    with pytest.raises(ValueError, match=match):
      chain.learning_rates(ml_collections.ConfigDict({'methods': 'sparse', 'lr': 1e-3,
                                                      'lrs': bad}))
  domains = chain.domains(1)
  sources = {name: helpers.synthetic_examples(8, seed) for seed, name in enumerate(domains)}
  tests = {name: helpers.tiny_dataset(cfg, 4, seed=10 + seed) for seed, name in enumerate(domains)}
  evaluator = lambda variables, dataset, stats, limit: {'wer': 0.5, 'cer': 0.25}
  run = lambda c: chain.run_chain(c, str(tmp_path), model=model, base_dir=base_dir, tests=tests,
                                  sources=sources, buckets=tests['base'].buckets,
                                  evaluator=evaluator, log=lambda *_: None)
  rows, _ = run(cfg)
  assert [(r['method'], r['lr']) for r in rows[1:]] == [
      ('sparse', 1e-3), ('full', 4e-3), ('full', 8e-3)]
  # the optimizer got the rates: one schedule, so its last rate scales with the peak
  sparse, full4, full8 = (str(tmp_path / 'chains' / name / 'update_1')
                          for name in ('sparse@0.1', 'full_lr0.004', 'full_lr0.008'))
  np.testing.assert_allclose(_final_lr(full4) / _final_lr(sparse), 4.0, rtol=1e-5)
  np.testing.assert_allclose(_final_lr(full8) / _final_lr(sparse), 8.0, rtol=1e-5)
  assert json.load(open(os.path.join(full8, 'update.json')))['lr'] == 8e-3
  cfg.diffs.lr = 2e-3                  # resuming the same workdir at another rate
  with pytest.raises(ValueError, match='trained at lr 0.001'):
    run(cfg)


def test_the_rate_grid_chooses_the_lowest_mean_wer_over_the_updates():
  rng = np.random.default_rng(0)
  grid = {('sparse', '10%'): [3e-3, 1e-2, 3e-2], ('full', 'all'): [1e-3, 3e-3]}
  rows = [{'method': 'base model', 'budget': '-', 'update': 0, 'lr': None}]
  wer = {}
  for (method, budget), rates in grid.items():
    for lr in rates:
      wer[method, lr] = rng.uniform(50, 90, size=(5, 2))
      rows += [{'method': method, 'budget': budget, 'lr': lr, 'update': k + 1,
                'wer_new': wer[method, lr][k, 0], 'wer_base': wer[method, lr][k, 1]}
               for k in range(5)]
  rows += [{'method': 'topk', 'budget': '10%', 'lr': 3e-3, 'update': 1, 'wer_new': 1.0,
            'wer_base': 1.0}]                       # one rate: nothing to choose
  table = chain.choose_rates(rows)
  assert {(t['method'], t['lr']) for t in table} == {(m, lr) for (m, _), r in grid.items()
                                                     for lr in r}
  for (method, _), rates in grid.items():
    means = [wer[method, lr][:, 0].mean() for lr in rates]
    mine = {t['lr']: t for t in table if t['method'] == method}
    np.testing.assert_allclose([mine[lr]['mean_wer_new'] for lr in rates], means)
    assert [mine[lr]['last_wer_base'] for lr in rates] == [wer[method, lr][4, 1] for lr in rates]
    assert [lr for lr in rates if mine[lr]['chosen']] == [rates[int(np.argmin(means))]]
  # a rate cut short by diffs.deadline is not compared with the finished ones
  cut = [r for r in rows if not (r['method'] == 'full' and r['lr'] == 3e-3 and r['update'] > 1)]
  cut[[i for i, r in enumerate(cut) if r['method'] == 'full' and r['lr'] == 3e-3][0]][
      'wer_new'] = 0.0
  assert [t['lr'] for t in chain.choose_rates(cut) if t['method'] == 'full' and t['chosen']] == [
      1e-3]


def test_deadline_stops_every_chain_before_its_next_update(base, tmp_path):
  # tools/gpu_oneshot.sh: a chain stopped by diffs.deadline still writes its table, the updates
  # not started named among the skipped. Past the deadline before the first update, every chain
  # stops there and nothing trains.
  cfg, model, _, base_dir = base
  cfg = _diffs_config(cfg, methods='sparse,full', budgets='0.1', updates=2, steps_per_update=2,
                      replay_fraction=0.0, eval_split='test', eval_utterances=2,
                      deadline=1.0)
  domains = chain.domains(2)
  sources = {name: helpers.synthetic_examples(4, seed) for seed, name in enumerate(domains)}
  tests = {name: helpers.tiny_dataset(cfg, 2, seed=10 + seed) for seed, name in enumerate(domains)}
  rows, skipped = chain.run_chain(cfg, str(tmp_path), model=model, base_dir=base_dir, tests=tests,
                                  sources=sources, buckets=tests['base'].buckets,
                                  evaluator=lambda *a, **k: {'wer': 0.5, 'cer': 0.25},
                                  log=lambda *_: None)
  assert [r['method'] for r in rows] == ['base model']
  assert skipped == ['sparse@0.1 update 1 and later (diffs.deadline)',
                     'full update 1 and later (diffs.deadline)']
  assert not (tmp_path / 'chains').exists()


def test_a_routed_model_is_diffed_arbitrator_included_and_its_routing_reported(tmp_path):
  # The two halves together: an AmNet (dense + factorized branch, arbitrator) as the deployed
  # model. Its updates train the whole pytree at the deployed temperature, and each row carries
  # the new domain's routing figures, checked here against numpy over the evaluator's rows.
  from asr import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  from amortized import analysis  # pylint: disable=g-import-not-at-top
  cfg = helpers.tiny_config(**{
      'train.steps': 4, 'model.encoder.branches': 'slow:dense,fast:factorized:0.25',
      'model.encoder.routing.loss_variant': 'two_sided_upl',
      'model.encoder.routing.lambda_cost': 1.0, 'model.encoder.routing.lambda_amr': 2.0,
      'model.encoder.routing.anneal_steps': 4})
  model = tiny_model(cfg)
  base_dir = str(tmp_path / 'base')
  train_lib.train(cfg, base_dir, model, helpers.tiny_dataset(cfg), log=lambda *_: None)
  cfg = _diffs_config(cfg, methods='full', budgets='0.1', updates=1, steps_per_update=2,
                      replay_fraction=0.0, eval_split='test', eval_utterances=4)
  routing = chain.update_config(cfg).model.encoder.routing
  deployed = cfg.model.encoder.routing.temperature_end
  assert routing.temperature_start == routing.temperature_end == deployed
  domains = chain.domains(1)
  sources = {name: helpers.synthetic_examples(8, seed) for seed, name in enumerate(domains)}
  tests = {name: helpers.tiny_dataset(cfg, 4, seed=10 + seed) for seed, name in enumerate(domains)}
  evaluator = evaluate_lib.Evaluator(model, cfg)
  summarize = lambda rows: analysis.routing_columns(model.encoder, rows)
  rows, _ = chain.run_chain(cfg, str(tmp_path / 'diffs'), model=model, base_dir=base_dir,
                            tests=tests, sources=sources, buckets=tests['base'].buckets,
                            evaluator=evaluator, summarize=summarize, log=lambda *_: None)
  base_params = chain.to_numpy(train_lib.load_params(base_dir))
  applied = package.load_params(str(tmp_path / 'diffs/chains/full/update_1/device.npz'))
  moved = jax.tree_util.tree_map(lambda a, b: bool(np.any(a != b)),
                                 base_params['encoder']['arbitrator'],
                                 applied['encoder']['arbitrator'])
  assert any(jax.tree_util.tree_leaves(moved))      # the arbitrator is part of the update
  stats = train_lib.feature_stats(None, cfg.frontend, base_dir)
  for row, params, domain in ((rows[0], base_params, 'update_1'), (rows[1], applied, 'update_1')):
    _, utterances = evaluator({'params': params}, tests[domain], stats, limit=4,
                              return_rows=True)
    choices = np.concatenate([np.asarray(u['route']).argmax(-1) for u in utterances])
    costs = model.encoder.branch_costs()
    np.testing.assert_allclose(row['mflops_per_frame'], costs[choices].mean() / 1e6, rtol=1e-6)
    shares = [f'{name} {100 * np.mean(choices == i):.0f}%'
              for i, name in enumerate(['slow', 'fast'])]
    assert row['shares'] == ', '.join(shares)
    assert 0 <= row['confident_share'] <= 100 and row['upl_median_ms'] <= row['upl_p90_ms']
  cached = json.load(open(tmp_path / 'diffs/base_eval.json'))
  assert 'summary' in cached['update_1'] and 'summary' not in cached['base']
