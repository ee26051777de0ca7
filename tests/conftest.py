import os
import sys

# Tests import the project from the repository root, and run on the CPU with one device unless
# a test asks for more (in a subprocess).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Many tests (and the launch.py subprocesses they start, which inherit the environment) compile
# the same tiny models: JAX's persistent compilation cache, shared by the xdist workers, compiles
# each program once per machine. Only compilations over a second are stored.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.cache', 'jax-tests'))


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: a test of a minute or more; run first')


def pytest_collection_modifyitems(items):
  """The slow tests go first, so that with `-n 2` no worker starts one while the other idles at
  the end of the run (a stable sort: the order is otherwise unchanged)."""
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)
