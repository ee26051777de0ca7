"""One process of a two-process run on this machine (tests/test_multihost.py):

  python tests/multihost_train_script.py PROCESS_ID PORT WORKDIR DATA_DIR STEPS SLEEP WRITES

joins the run at localhost:PORT, trains the tiny config through `modes.train` on the stand-in
corpus of `helpers.fake_corpus` in DATA_DIR (sleeping SLEEP seconds a step, so a test can
signal it mid-run), and writes to WRITES (JSON) every file it opened for writing or moved into
place (`os.replace`, the last step of an atomic write).
"""
import builtins
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from asr import multihost  # pylint: disable=g-import-not-at-top


def main(process_id, port, workdir, data_dir, steps, sleep, writes):
  multihost.initialize(coordinator_address=f'localhost:{port}', num_processes=2,
                       process_id=int(process_id))
  written, real_open = [], builtins.open

  def recording_open(file, mode='r', *args, **kwargs):
    if isinstance(file, (str, os.PathLike)) and any(c in mode for c in 'wax+'):
      written.append(os.path.abspath(os.fspath(file)))
    return real_open(file, mode, *args, **kwargs)
  real_replace = os.replace

  def recording_replace(src, dst, *args, **kwargs):
    written.append(os.path.abspath(os.fspath(dst)))
    return real_replace(src, dst, *args, **kwargs)
  builtins.open, os.replace = recording_open, recording_replace
  try:
    from asr import evaluate  # pylint: disable=g-import-not-at-top
    from asr.data import voice_assistant  # pylint: disable=g-import-not-at-top
    from experiments import modes  # pylint: disable=g-import-not-at-top
    from tests import helpers  # pylint: disable=g-import-not-at-top
    voice_assistant.corpus = sys.modules['asr.data.voice_assistant.corpus'] = (
        helpers.fake_corpus())
    evaluate.Evaluator = helpers.stub_evaluator
    cfg = helpers.tiny_config(**{'train.steps': int(steps), 'data.data_dir': data_dir})

    def log(line):
      print(line, flush=True)
      time.sleep(float(sleep))
    modes.train(cfg, workdir, log=log)
  finally:
    builtins.open, os.replace = real_open, real_replace
    with open(writes, 'w') as f:
      json.dump(written, f)


if __name__ == '__main__':
  main(*sys.argv[1:])
