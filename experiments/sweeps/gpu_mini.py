"""experiments/sweeps/gpu.py at the size of the CPU miniature (`tools/gpu_oneshot.sh
--miniature`): the same points, configs `gpu.py:ROW@mini`."""
from experiments.sweeps import gpu


def get_sweep(root: str):
  return gpu.get_sweep(root, size='mini')
