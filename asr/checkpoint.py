"""Orbax checkpoints of the train state, with the data position beside it.

A checkpoint holds two items: `state` (step, trainable pytree, optimizer state, and the fixed
pytree: pruning masks, a diff's base...) and `meta` (JSON: step, epoch, batches per epoch, the
config's seed), which records where the input pipeline stands. Because batches are a pure function of
(seed, step), restoring `state` then reading batches from `meta['step']` resumes exactly.

Restore order: build the abstract state from a fresh init (shapes, dtypes, shardings), restore
`state` into it, then `meta`; the caller checks `meta` against its config before continuing.
Orbax writes each step into a temporary folder and renames it when complete, so a kill during
a save leaves the previous step restorable.
"""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp


def _fill_empty(tree):
  """Orbax refuses zero-size arrays (a diff's ineligible leaves) and numpy scalars (hash
  seeds): store one element and 0-d arrays instead."""
  def fill(x):
    if isinstance(x, np.generic):
      return np.asarray(x)
    return np.zeros((1,), x.dtype) if getattr(x, 'size', 1) == 0 else x
  return jax.tree_util.tree_map(fill, tree)


def _restore_empty(tree, like):
  return jax.tree_util.tree_map(
      lambda x, t: np.zeros(t.shape, t.dtype) if getattr(t, 'size', 1) == 0 else x, tree, like)


class Checkpointer:
  """Keep the last `keep` checkpoints under `directory`; save every `every` steps."""

  def __init__(self, directory: str, every: int, keep: int = 3):
    self.every = every
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory),       # orbax requires absolute paths
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=1, create=True,
            # Synchronous: the next train step donates the state buffers, and a preempted job
            # should not die with a half-written save it believed done.
            enable_async_checkpointing=False),
        item_names=('state', 'meta'))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict, force: bool = False) -> bool:
    if not force and (step % self.every != 0):
      return False
    if step in self.manager.all_steps():
      return False
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_fill_empty(state)), meta=ocp.args.JsonSave(meta)),
                      force=True)
    self.manager.wait_until_finished()
    return True

  def restore(self, abstract_state, step: int | None = None):
    """Returns (state, meta) of `step` (default: the latest), shaped like `abstract_state`."""
    step = self.latest_step() if step is None else step
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _fill_empty(abstract_state))
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return _restore_empty(restored['state'], abstract_state), restored['meta']

  def restore_raw(self, step: int | None = None):
    """The latest `state` and `fixed` as saved, without a target: for reading a trained
    model's parameters into another model (initialisation, diffs' base). A checkpoint saved
    over devices this process does not have (a multi-host run's) is read onto its first
    local device."""
    step = self.latest_step() if step is None else step
    local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(fallback_sharding=local), meta=ocp.args.JsonRestore()))
    return restored['state'], restored['meta']

  def close(self):
    self.manager.close()
