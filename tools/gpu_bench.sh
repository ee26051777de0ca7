#!/usr/bin/env bash
# The GPU figures of README "Performance", as one script for a GPU machine that has jax (CUDA),
# flax, optax, pytest, torch and torchaudio but no network (the device of this project's tool
# library; its python3 is 3.12).
#
#   bash tools/gpu_bench.sh --prepare      # here, with network: the wheel the GPU image lacks
#   bash tools/gpu_bench.sh OUT_DIR        # there: the cuDNN check, then every comparison
#   bash tools/gpu_bench.sh OUT_DIR lstm_impl   # there: cuDNN against the fused scans only
#
# Comparisons, each side by side in one process run, most wanted first (a run cut short still
# leaves the first ones in OUT_DIR):
#   - 5 x LSTM-640 RNN-T step (batch 32 x 200 frames, Adam): the fused scans (lstm_impl=auto)
#     against PyTorch cuDNN + torchaudio;
#   - the paper-sized AmNet step against its dense single branch, with the RNN-T loss against
#     its lean variant and single-thread streaming;
#   - asr.rnnt.rnnt_loss against torchaudio's rnnt_loss, logits [32, 200, 33, 101];
#   - the same encoder with LSTM + CTC against nn.LSTM (cuDNN); the RNN-T with one cuDNN call
#     (lstm_impl=cudnn);
#   - AmNet batch scaling 64 and 128 (train step only).
# The lstm_impl group is how `lstm_impl=auto` came to take the scans on a GPU too: the RNN-T
# step with cuDNN and with the fused scans, alternated twice (50 timed steps each), at
# the default precision (TF32 matmuls in both JAX paths, and in PyTorch's cuDNN LSTM) and at
# float32; then the AmNet comparison with its dense model on the scans.
# OUT_DIR gets gpu.txt, tests.txt, bench.txt (tables and logs) and bench.jsonl (every figure).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=gpu_wheels

if [[ "${1:-}" == "--prepare" ]]; then
  .venv/bin/python -m pip download -q --no-deps -d "$WHEELS" ml-collections==1.1.0
  echo "carry $WHEELS/ (and the working tree) to the GPU machine"
  exit 0
fi

OUT=${1:?usage: tools/gpu_bench.sh OUT_DIR [lstm_impl] | --prepare}
GROUP=${2:-all}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
if ! $PY -c 'import ml_collections' 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site "$WHEELS"/ml_collections-*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c 'import jax, flax, torch, torchaudio; print("jax", jax.__version__, jax.devices(),
"flax", flax.__version__, "torch", torch.__version__, "torchaudio", torchaudio.__version__)' \
  | tee -a "$OUT/gpu.txt"

bench() {   # seconds allowed, name, then launch.py flags; figures go to bench.jsonl, tables and
            # logs to bench.txt
  local limit=$1 name=$2; shift 2
  echo "=== $name: $*" | tee -a "$OUT/bench.txt"
  local t0=$SECONDS
  timeout "$limit" $PY launch.py --mode=bench --workdir="/tmp/bench_$name" "$@" 2>"/tmp/$name.err" \
    | while IFS= read -r line; do
        if [[ $line == '{'* ]]; then echo "{\"run\": \"$name\", ${line:1}" >>"$OUT/bench.jsonl"
        else echo "$line"; fi
      done | tee -a "$OUT/bench.txt"
  local rc=${PIPESTATUS[0]}
  echo "($name: exit $rc, $((SECONDS - t0)) s wall)" | tee -a "$OUT/bench.txt"
  [[ $rc == 0 ]] || tail -n 30 "/tmp/$name.err" | tee -a "$OUT/bench.txt"
}
AMNET=(--config=experiments/configs/amnet.py:amnet_mf --config.model.encoder.init_from=
       --config.model.encoder.layers=5 --config.model.encoder.units=640)
if [[ $GROUP == lstm_impl ]]; then
  RNNT=(--config=experiments/configs/bench_reference.py:rnnt --config.bench.steps=50)
  for rep in 1 2; do
    bench 120 "rnnt_cudnn_$rep" "${RNNT[@]}" --config.model.encoder.lstm_impl=cudnn
    bench 120 "rnnt_scan_$rep" "${RNNT[@]}" --config.model.encoder.lstm_impl=scan
  done
  bench 150 amnet_b32_dense_scan "${AMNET[@]}" --config.model.encoder.lstm_impl=scan \
    --config.train.batch_size=32 --config.bench.stream_utterances=0 --config.bench.loss_shapes='()'
  export JAX_DEFAULT_MATMUL_PRECISION=float32   # JAX's side only: PyTorch's cuDNN stays TF32
  bench 120 rnnt_cudnn_f32 "${RNNT[@]}" --config.model.encoder.lstm_impl=cudnn
  bench 120 rnnt_scan_f32 "${RNNT[@]}" --config.model.encoder.lstm_impl=scan
  echo "figures in $OUT"
  exit 0
fi

echo "=== cuDNN stack against the scans, on the GPU" | tee "$OUT/tests.txt"
JAX_PLATFORMS=cuda timeout 300 $PY -m pytest -q -p no:cacheprovider tests/test_lstm.py \
  2>&1 | tee -a "$OUT/tests.txt"

bench 150 rnnt --config=experiments/configs/bench_reference.py:rnnt
bench 240 amnet_b32 "${AMNET[@]}" --config.train.batch_size=32 --config.bench.stream_utterances=2 \
  --config.bench.loss_shapes='((32,200,32,101),(8,200,60,1024))'
bench 90 rnnt_loss --config=experiments/configs/bench_reference.py:rnnt_loss
bench 120 lstm_ctc --config=experiments/configs/bench_reference.py:lstm_ctc \
  --config.bench.reference_shape.layers=5 --config.bench.reference_shape.units=640 \
  --config.bench.reference_shape.batch=32 --config.bench.reference_shape.frames=200
bench 150 rnnt_cudnn --config=experiments/configs/bench_reference.py:rnnt \
  --config.model.encoder.lstm_impl=cudnn
for batch in 64 128; do
  bench 150 "amnet_b$batch" "${AMNET[@]}" --config.train.batch_size=$batch \
    --config.bench.stream_utterances=0 --config.bench.loss_shapes='()'
done
echo "figures in $OUT"
