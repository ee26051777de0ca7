import os
import sys

# Tests import the project from the repository root, and run on the CPU with one device unless
# a test asks for more (in a subprocess).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Many tests (and the launch.py subprocesses they start, which inherit the environment) compile
# the same tiny models: JAX's persistent compilation cache, shared by the xdist workers, compiles
# each program once per machine. Every program is stored, the many small ones too: a subprocess
# of a preemption or sweep test compiles dozens of them, the same in each process.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.cache', 'jax-tests'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

# The tests' models are tiny: compiling them costs more than running them, and LLVM's
# optimisation passes are most of the compile. Without them the suite runs in about two thirds
# of the time; a test's figures are compared within its own process or against references with
# tolerances, never against an optimised build. Subprocesses inherit the flag.
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_backend_optimization_level=0').strip()


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: a test of a minute or more; run first')


def pytest_collection_modifyitems(items):
  """The slow tests go first, so that with `-n 2` no worker starts one while the other idles at
  the end of the run (a stable sort: the order is otherwise unchanged)."""
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)
