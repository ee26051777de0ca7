"""Metrics to `workdir/metrics.jsonl` and to TensorBoard event files in `workdir/tensorboard`
(every numeric field of a record as the scalar `kind/field`, e.g. `train/loss`,
`eval/base_test/wer`), and a one-line progress display with step, loss, steps/s and ETA.

  tensorboard --logdir workdirs/     # tensorboard itself is not a requirement; any viewer works
"""
import json
import os
import sys
import time

import tensorboardX


class MetricWriter:
  """`active=False` (every process but process 0 of a multi-host run) writes nothing: the
  records are the same on every host, and the files are one per run."""

  def __init__(self, workdir: str, active: bool = True):
    self.active = active
    if not active:
      return
    self._file = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, kind: str, record: dict):
    if not self.active:
      return
    self._file.write(json.dumps({'kind': kind, **record}, default=float) + '\n')
    self._file.flush()
    for key, value in record.items():
      if isinstance(value, (int, float)) and key != 'step':
        self._tb.add_scalar(f'{kind}/{key}', value, record.get('step', 0))
    self._tb.flush()

  def close(self):
    if self.active:
      self._file.close()
      self._tb.close()


def read_metrics(workdir: str, kind: str | None = None) -> list[dict]:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [r for r in rows if kind is None or r['kind'] == kind]


class Progress:
  """Prints `step 120/300 loss 41.2 2.4 steps/s ETA 1m15s`, in place on a terminal."""

  def __init__(self, start: int, total: int, log=print):
    self.start, self.total, self.log = start, total, log
    self.t0 = time.perf_counter()
    self.tty = sys.stdout.isatty() and log is print

  def update(self, step: int, loss: float):
    elapsed = time.perf_counter() - self.t0
    rate = (step - self.start) / max(elapsed, 1e-9)
    eta = (self.total - step) / max(rate, 1e-9)
    line = (f'step {step}/{self.total} loss {loss:.3f} {rate:.2f} steps/s '
            f'ETA {int(eta // 60)}m{int(eta % 60):02d}s')
    if self.tty:
      sys.stdout.write('\r' + line + ' ' * 8)
      sys.stdout.flush()
    else:
      self.log(line)

  def close(self):
    if self.tty:
      sys.stdout.write('\n')
