"""The one entry point: every experiment runs through here.

  python launch.py --config=experiments/configs/tiny_rnnt.py --workdir=workdirs/tiny \
      [--mode=train|eval|transcribe|export|...] [--config.train.steps=500 ...]
  python launch.py --workdir=pretrained/base --mode=transcribe --audio=my.wav  # its own config
  python launch.py --sweep=experiments/sweeps/amnet_cpu.py --workdir=workdirs/amnet_cpu \
      [--mode=train|report] [--sweep_print]

A config file's docstring holds its exact command and expected result. Overrides of unknown keys
or of the wrong type are refused by ml_collections before anything runs; inconsistent values are
refused by `experiments.validate`.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from asr import multihost
from experiments import modes
from experiments import sweep as sweep_lib
from experiments import validate

config_flags.DEFINE_config_file('config', None, 'Experiment config file[:arg].', lock_config=True)
flags.DEFINE_string('workdir', None, 'Checkpoints, metrics and reports go here.')
flags.DEFINE_enum('mode', 'train', sorted(modes.MODES), 'What to run.')
flags.DEFINE_string('sweep', None, 'A sweep file: run (or report) all its points under workdir.')
flags.DEFINE_bool('sweep_print', False, 'With --sweep: print one command per point and exit.')
flags.DEFINE_string('audio', '', 'mode=transcribe: an audio file, a folder of them, or - for '
                    'stdin (raw 16 kHz mono int16, or such a WAV).')
flags.DEFINE_string('output', '', 'mode=transcribe: write the transcriptions with word times '
                    'here, TSV (.tsv) or JSON lines (.jsonl); default: path<TAB>text on stdout.')
flags.DEFINE_enum('format', '', ['', 'text', 'tsv', 'jsonl'],
                  'mode=transcribe: the --output format when its extension does not tell.')
flags.DEFINE_bool('stream', False, 'mode=transcribe: feed the audio chunk by chunk through the '
                  'streaming encoder, showing the partial hypothesis on stderr.')
flags.DEFINE_bool('realtime', False, 'mode=transcribe --stream: play files in real time.')
flags.DEFINE_float('chunk_ms', 300.0, 'mode=transcribe --stream: audio per chunk.')
flags.DEFINE_bool('progress', True, 'Progress bars on stderr (only ever on a terminal).')
flags.DEFINE_string('export_dir', '', 'mode=export: the folder to write (default WORKDIR/export).')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if os.environ.get('JAX_DISTRIBUTED') == '1':
    multihost.initialize()                     # multi-host: TPU pods, GPU clusters
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)     # orbax logs every save at INFO
  if not FLAGS.workdir:
    raise app.UsageError('--workdir is required')
  if FLAGS.sweep:
    sweep = sweep_lib.load_sweep(FLAGS.sweep, FLAGS.workdir)
    if FLAGS.sweep_print:
      print('\n'.join(sweep_lib.commands(sweep)))
    else:
      modes.run_sweep(sweep, FLAGS.workdir, FLAGS.mode)
    return
  cfg = FLAGS.config
  if cfg is None and FLAGS.mode in modes.CONFIG_FROM_WORKDIR:
    from experiments.configs import from_workdir  # pylint: disable=g-import-not-at-top
    cfg = from_workdir.load(FLAGS.workdir)
  if cfg is None and FLAGS.mode not in modes.NO_CONFIG:
    raise app.UsageError(f'--config is required for --mode={FLAGS.mode}')
  if cfg is not None:
    validate.check(cfg)
  modes.MODES[FLAGS.mode](cfg, FLAGS.workdir, audio=FLAGS.audio, export_dir=FLAGS.export_dir,
                          output=FLAGS.output, output_format=FLAGS.format, stream=FLAGS.stream,
                          realtime=FLAGS.realtime, chunk_ms=FLAGS.chunk_ms,
                          progress=FLAGS.progress)


def run(argv):
  """Errors about the user's input (config, files, data) end in one line, not a traceback;
  pass --verbosity=1 to see the traceback."""
  try:
    main(argv)
  except (ValueError, FileNotFoundError) as e:
    if FLAGS.verbosity >= 1:
      raise
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(run)
