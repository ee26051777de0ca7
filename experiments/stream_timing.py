"""Wall time of streaming inference on one CPU thread, several models side by side.

Streaming runs the encoder frame by frame with only the routed branch computed (`stream` of the
AmNet encoder). It is timed in a child process started with XLA's CPU thread pool off, so every
model gets exactly one thread, and all models of one comparison are timed in that same process
on the same utterances, after compiling every shape first, in passes that alternate between the
models.

  python -m experiments.stream_timing SPEC.json     # prints one JSON line per model

SPEC.json: {"models": [{"name", "config" (a config as a dict), "workdir" (optional: trained
weights and the longest test utterances; otherwise random init, its sparse branches pruned at
their budgets, and synthetic audio),
"sparse_format" (optional: "grouped", the default, streams sparse branches pruned in groups in
the grouped format of the encoder's `stream_weights`; "masked" streams the trained masked dense
weights)}], "utterances": N, "seconds": S (synthetic length), "repeats": R (timed passes per
model, default 7; the median is reported)}. Each result has the median pass's seconds, the
real-time factor, and the time per encoder frame.
"""
import functools
import json
import os
import subprocess
import sys
import tempfile
import time

REPEATS = 7      # timed passes per model; the median is reported
SPARSE_FORMATS = ('grouped', 'masked')
SINGLE_THREAD_FLAGS = ('--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1')


def measure(spec: dict) -> list[dict]:
  """Runs `spec` in a single-threaded child process; returns one dict per model."""
  with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
    json.dump(spec, f)
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') + ' ' + SINGLE_THREAD_FLAGS).strip())
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, '-m', 'experiments.stream_timing', f.name], env=env,
                       cwd=root, capture_output=True, text=True, check=False)
  os.unlink(f.name)
  if out.returncode:
    hint = ('' if 'Cannot allocate memory' not in out.stderr else
            f'\n{len(spec["models"])} models compiled more programs than one process may map '
            '(vm.max_map_count); time fewer models at once or raise vm.max_map_count')
    raise RuntimeError(f'stream_timing failed:\n{out.stderr[-3000:]}{hint}')
  return [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{')]


def _run(spec: dict):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from amortized import compression  # pylint: disable=g-import-not-at-top
  from amortized import encoder as encoder_lib  # pylint: disable=g-import-not-at-top
  from asr import features  # pylint: disable=g-import-not-at-top
  from asr import train as train_lib  # pylint: disable=g-import-not-at-top
  from asr.data import batching  # pylint: disable=g-import-not-at-top
  from experiments import data as data_lib  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top

  n = int(spec.get('utterances', 8))
  audio = None
  prepared = []
  for m in spec['models']:
    if m.get('sparse_format', 'grouped') not in SPARSE_FORMATS:
      raise ValueError(f'stream_timing: sparse_format {m["sparse_format"]!r} is not one of '
                       f'{SPARSE_FORMATS}')
    cfg = ml_collections.ConfigDict(m['config'])
    model = models.build_model(cfg)
    empty = batching.Dataset([], data_lib.buckets(cfg))
    if m.get('workdir'):
      variables, stats = train_lib.load_trained(cfg, m['workdir'], model, empty)
      if audio is None:
        test = data_lib.load_split(cfg, cfg.data.eval_split, log=lambda *_: None)
        order = np.argsort([-a.size for a in test.audio])[:n]
        audio = [test.audio[i] for i in sorted(order)]
    else:
      variables = compression.budget_masks(
          train_lib.init_variables(model, cfg, empty, cfg.seed),
          encoder_lib.parse_branches(cfg.model.encoder.branches), cfg.model.encoder.sparse_group)
      stats = {'mean': np.zeros(cfg.frontend.num_mels, np.float32),
               'std': np.ones(cfg.frontend.num_mels, np.float32)}
    prepared.append((m['name'], m.get('sparse_format', 'grouped'), cfg, model, variables, stats))
  if audio is None:
    rng = np.random.default_rng(0)
    samples = int(float(spec.get('seconds', 4.0)) * 16000)
    audio = [(rng.standard_normal(samples) * 3000).astype(np.int16) for _ in range(n)]
  audio_seconds = sum(a.size for a in audio) / 16000
  # Each compiled program holds dozens to hundreds of memory mappings, and a process may hold
  # 65,530 by default (vm.max_map_count): one featurizer per frontend, its statistics an
  # argument, keeps a sweep's rows from compiling the same features once per row.
  featurizers = {}
  runs = []
  for name, sparse_format, cfg, model, variables, stats in prepared:
    frontend = json.dumps(cfg.frontend.to_dict(), sort_keys=True)
    if frontend not in featurizers:
      featurizers[frontend] = jax.jit(lambda a, st, fe=cfg.frontend: features.featurize(
          a, np.zeros(a.shape, np.float32), fe, st))
    feats = lambda a, featurize=featurizers[frontend], stats=stats: featurize(a, stats)
    enc_vars = {k: v['encoder'] for k, v in variables.items() if 'encoder' in v}
    weights = (model.encoder.apply(enc_vars, method='stream_weights')
               if sparse_format == 'grouped' else None)
    stream = jax.jit(lambda x, p, w, model=model, enc_vars=enc_vars: model.encoder.apply(
        enc_vars, x, p, w, method='stream'))
    stream = functools.partial(stream, w=weights)
    inputs = [feats(a[None]) for a in audio]
    runs.append((name, stream, inputs, _time_pass(stream, inputs)))   # compiles every shape
  # One pass of the utterances takes well under a second, so a single pass per model swings
  # with whatever else the machine does at that moment: time `repeats` passes round-robin over
  # the models and keep each model's median, so every model sees the same conditions.
  passes = {name: [] for name, *_ in runs}
  for _ in range(int(spec.get('repeats', REPEATS))):
    for name, stream, inputs, _ in runs:
      passes[name].append(_time_pass(stream, inputs))
  results = []
  for name, _, inputs, first_pass in runs:
    seconds = float(np.median(passes[name]))
    frames = sum(int(x.shape[1]) for x, _ in inputs)
    results.append({'name': name, 'stream_seconds': seconds, 'audio_seconds': audio_seconds,
                    'rtf': seconds / audio_seconds, 'frames': frames,
                    'ms_per_frame': 1000 * seconds / frames, 'first_pass_seconds': first_pass,
                    'pass_seconds': passes[name]})
  return results


def _time_pass(stream, inputs) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  for x, p in inputs:
    jax.block_until_ready(stream(x, p))
  return time.perf_counter() - t0


if __name__ == '__main__':
  with open(sys.argv[1]) as fh:
    for result in _run(json.load(fh)):
      print(json.dumps(result))
