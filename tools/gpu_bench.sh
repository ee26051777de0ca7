#!/usr/bin/env bash
# The GPU figures of README "Performance", as one script for a GPU machine that has jax (CUDA),
# flax, optax, torch and torchaudio but no network (the device of this project's tool library).
#
#   bash tools/gpu_bench.sh --prepare      # here, with network: wheels the GPU image lacks
#   bash tools/gpu_bench.sh OUT_DIR        # there: every comparison, JSON lines + tables
#
# Comparisons, each side by side in one process run:
#   - 5 x LSTM-640 RNN-T step (batch 32 x 200 frames, Adam) against PyTorch cuDNN + torchaudio;
#   - the same encoder with LSTM + CTC against nn.LSTM (cuDNN);
#   - asr.rnnt.rnnt_loss against torchaudio's rnnt_loss, logits [32, 200, 33, 101];
#   - the paper-sized AmNet step against its dense single branch, and batch scaling 32/64/128.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=gpu_wheels

if [[ "${1:-}" == "--prepare" ]]; then
  .venv/bin/python -m pip download -q --no-deps -d "$WHEELS" ml-collections==1.1.0
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d "$WHEELS" pyyaml
  echo "carry $WHEELS/ (and the working tree) to the GPU machine"
  exit 0
fi

OUT=${1:?usage: tools/gpu_bench.sh OUT_DIR | --prepare}
mkdir -p "$OUT"
PY=${PY:-python}
if ! $PY -c 'import ml_collections' 2>/dev/null; then
  $PY -m pip install -q --no-index --find-links "$WHEELS" ml-collections pyyaml
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c 'import jax, torch; print("jax", jax.__version__, jax.devices(), "torch", torch.__version__)' \
  | tee -a "$OUT/gpu.txt"

bench() {   # name, then launch.py flags
  local name=$1; shift
  echo "=== $name"
  $PY launch.py --mode=bench --workdir="/tmp/bench_$name" "$@" 2>"$OUT/$name.log" \
    | tee "$OUT/$name.txt" | grep -v '^{'
}
bench rnnt --config=experiments/configs/bench_reference.py:rnnt
bench rnnt_scan --config=experiments/configs/bench_reference.py:rnnt \
  --config.model.encoder.lstm_impl=scan
bench lstm_ctc --config=experiments/configs/bench_reference.py:lstm_ctc \
  --config.bench.reference_shape.layers=5 --config.bench.reference_shape.units=640 \
  --config.bench.reference_shape.batch=32 --config.bench.reference_shape.frames=200
bench rnnt_loss --config=experiments/configs/bench_reference.py:rnnt_loss
for batch in 32 64 128; do
  bench "amnet_b$batch" --config=experiments/configs/amnet.py:amnet_mf \
    --config.model.encoder.init_from= --config.model.encoder.layers=5 \
    --config.model.encoder.units=640 --config.train.batch_size=$batch \
    --config.bench.stream_utterances=2 \
    --config.bench.loss_shapes='((32,200,32,101),(8,200,60,1024))'
done
echo "figures in $OUT"
