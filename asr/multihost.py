"""Several processes (one per host) training one model: start-up, who writes, barriers.

Every host runs the same command. After `initialize`, `jax.devices()` lists every host's
devices, and the collectives of the train step keep the hosts in step. Files are written by
process 0 only (`is_main`), except Orbax checkpoints, which every process saves together (Orbax
coordinates them; the workdir must be one shared folder). Work done once for all hosts, such as
building a corpus, runs on process 0 first (`main_first`). With one process every function here
is a no-op or trivially true.
"""
import contextlib
import os

import jax
from jax.experimental import multihost_utils


def initialize(**kwargs):
  """`jax.distributed.initialize(**kwargs)`. `num_processes` and `process_id` not given are
  read from $JAX_NUM_PROCESSES and $JAX_PROCESS_ID where set (JAX reads the coordinator from
  $JAX_COORDINATOR_ADDRESS); otherwise JAX finds all three in the cluster's environment (TPU,
  SLURM, Open MPI, Kubernetes).

  JAX's own preemption service is turned off first: its SIGTERM handler only sets a flag that
  nothing here reads, so outside the train loop a SIGTERM would not end the process; the train
  loop agrees on SIGTERM by itself (`asr.train`).
  """
  for key, name in (('num_processes', 'JAX_NUM_PROCESSES'), ('process_id', 'JAX_PROCESS_ID')):
    if key not in kwargs and os.environ.get(name):
      kwargs[key] = int(os.environ[name])
  jax.config.update('jax_enable_preemption_service', False)
  jax.distributed.initialize(**kwargs)


def is_main() -> bool:
  """Whether this process writes the run's files (metrics, reports, config, exports)."""
  return jax.process_index() == 0


def barrier(name: str):
  """Every process waits here until all have arrived; `name` must match on all of them."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def main_first(name: str):
  """Runs the block on process 0, then on the others. For idempotent shared work (a corpus
  build that is a no-op once built): on a shared filesystem only process 0 does the work and
  the others find it done; on per-host disks each host still builds its own copy."""
  if not is_main():
    barrier(name)
  yield
  if is_main():
    barrier(name)
