"""Speed against PyTorch, side by side in one run (experiments/reference.py); no corpus needed.

  # CPU: 4 x LSTM-320 + CTC, batch 16 x 150 frames, Adam step
  python launch.py --mode=bench --config=experiments/configs/bench_reference.py:lstm_ctc \
      --workdir=workdirs/bench_reference
  # CPU: the base recognizer's encoder batched as it trains: at 30 ms frames (240-dim input,
  # 80 x 100 frames), and at the base recipe's 60 ms frames (480-dim input, 80 x 50 frames)
  python launch.py --mode=bench --config=experiments/configs/bench_reference.py:base_lstm_ctc \
      --workdir=workdirs/bench_base
  python launch.py --mode=bench --config=experiments/configs/bench_reference.py:base60_lstm_ctc \
      --workdir=workdirs/bench_base60
  # GPU: the paper-sized RNN-T (5 x LSTM-640, batch 32 x 200 frames) against PyTorch cuDNN +
  # torchaudio, and the RNN-T loss against torchaudio's
  python launch.py --mode=bench --config=experiments/configs/bench_reference.py:rnnt ...
  python launch.py --mode=bench --config=experiments/configs/bench_reference.py:rnnt_loss ...

The PyTorch side needs `make bench-reference` (installs requirements-bench.txt). Measured
figures, with the machine, are in README "Performance".
"""
from experiments.configs import common


def get_config(kind: str = 'lstm_ctc'):
  c = common.base_config()
  if kind in ('base_lstm_ctc', 'base_rnnt', 'base60_lstm_ctc'):
    # The base recognizer's encoder (configs/base.py: 3 x LSTM-192), at 30 ms frames with 8,000
    # encoder frames per step (80 x 3 s), or at its 60 ms frames with 4,000 (the same audio).
    sixty = kind.startswith('base60_')
    kind = kind.split('_', 1)[1]
    c.model.encoder.layers = 3
    c.model.encoder.units = 192
    c.model.pred_units = 128
    c.model.joint_dim = 128
    c.bench.reference_shape.update(layers=3, units=192, input_dim=480 if sixty else 240,
                                   batch=80, frames=50 if sixty else 100, labels=40)
  c.bench.reference = kind
  c.bench.steps = 20
  c.bench.warmup = 3
  if kind in ('rnnt', 'rnnt_loss'):
    c.model.encoder.layers = 5
    c.model.encoder.units = 640
    c.model.pred_units = 320
    c.model.joint_dim = 320
    c.bench.reference_shape.update(input_dim=240, batch=32, frames=200, labels=32)
    if kind == 'rnnt_loss':
      c.bench.reference_shape.update(vocab=101)   # torchaudio measured: [32, 200, 101, 32]
  return c
