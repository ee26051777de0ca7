"""Data parallelism: a step on 4 (fake CPU) devices gives the params of a 1-device step."""
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), 'tiny_train_script.py')


def _train(tmp_path, name, devices):
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') +
                        f' --xla_force_host_platform_device_count={devices}'))
  out = tmp_path / f'{name}.npz'
  subprocess.run([sys.executable, SCRIPT, str(tmp_path / name), str(out), '3'], env=env,
                 check=True, capture_output=True, timeout=300)
  return np.load(out)


@pytest.mark.slow
def test_four_devices_match_one(tmp_path):
  one, four = _train(tmp_path, 'one', 1), _train(tmp_path, 'four', 4)
  assert int(one['devices']) == 1 and int(four['devices']) == 4
  keys = [k for k in one.files if k != 'devices']
  assert keys
  for k in keys:
    np.testing.assert_allclose(one[k], four[k], atol=1e-5, err_msg=k)
