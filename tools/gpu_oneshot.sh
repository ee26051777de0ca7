#!/usr/bin/env bash
# The paper-size experiments in the few minutes a GPU machine is lent (README, "Running on a
# GPU"): a machine with jax (CUDA), flax, optax and Python 3.12, 16 cores, no apt, no network,
# no TTS engines, at most 64 MiB of files brought per command and at most 10 minutes a command.
#
#   bash tools/gpu_oneshot.sh --prepare          # here, with package registries: fills gpu_carry/
#   bash tools/gpu_oneshot.sh OUT_DIR base       # there (carry gpu_carry): corpus + paper-size base
#   bash tools/gpu_oneshot.sh OUT_DIR rows       # there: corpus + the decisive rows + diff chains
#   bash tools/gpu_oneshot.sh --miniature OUT_DIR   # here: both stages at toy size, packed
#                                                   # engines only (the check; README)
#
# --prepare packs what that machine lacks into gpu_carry/ (ignored by git): the Python wheels
# for Python 3.12 x86_64 that the corpus builder, training and the diff packages import
# (WHEELS below), and engines.tar.xz, the TTS engines (`python -m asr.data.voice_assistant.engines
# --pack`, PACK_ENGINES below: flite, espeak-ng and festival fit; piper's voice alone is 61 MB)
# with the `fortunes` and `wamerican` text the corpus mixes in. It prints the sizes and refuses a
# total over the limit.
#
# Each stage builds the `full` corpus unless it is already there (a machine still warm from the
# last command keeps the ignored workdirs/), so either stage runs on a fresh machine. `base`
# trains the dense base (experiments/configs/gpu.py:base) and exports it; `rows` fine-tunes
# from that export when this machine still has it, else first trains a shorter base of its own
# (said in its summary), then: the AmNet-MF with the final-UPL term, the static factorized
# encoder at matched FLOPs, the AmNet-sparse, their table (sweeps/gpu.py), and a five-update
# sparse diff at 10% beside full fine-tuning. Every step runs under `timeout` against the
# stage's deadline (STAGE_S, default 540 s) and training under `train.deadline`, so a stage
# ends by itself with what it finished; after every step OUT_DIR gets, afresh:
#   summary_STAGE.md         rows trained so far: steps, minutes, WER per split, why it stopped
#   results_STAGE.tar.gz     tables (.md, .csv), plots, metrics.jsonl and learning_curve.png
#                            per run, configs, the corpus metadata (engines used, hours), and
#                            log_STAGE.txt, everything printed
#   base_fp16.tar.part-*     (base) the exported base at float16, in parts of 15 MiB, when
#                            under 40 MB (asr.export.half_copy; loads as float32)
# Environment: STAGE_S (seconds per stage), PY (the Python, default python3, .venv's for the
# miniature), WORKERS (corpus processes, default every core).
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=gpu_carry
# Wheels the GPU image lacks (or has in another version): pinned to what runs here. zstandard
# and bsdiff4 (the binary-delta baseline) stay behind: the run turns that baseline off.
WHEELS=(ml-collections==1.1.0 tensorflow-datasets==4.9.10 array-record==0.8.6 etils==1.15.0
        dm-tree==0.1.10 immutabledict==4.3.1 promise==2.3 simple-parsing==0.1.9
        docstring-parser==0.18.0 tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0
        protobuf==7.36.2 termcolor==3.3.0 toml==0.10.2 soundfile==0.14.0 cffi==2.1.1
        pycparser==3.12 tensorboardX==2.6.5 cryptography==50.0.2)
IMPORTS=ml_collections,tensorflow_datasets,array_record,soundfile,tensorboardX,cryptography
PACK_ENGINES=${PACK_ENGINES:-flite,espeak,festival}
LIMIT_MIB=64

mib() { echo $(( ($1 + 1048575) / 1048576 )); }
tree_bytes() {   # what travels besides carried folders: tracked and untracked-not-ignored files
  git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}'
}

prepare() {
  local py=${PY:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
  rm -rf "$CARRY"
  mkdir -p "$CARRY/wheels"
  local platforms=() n
  for n in 17 24 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
  platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
  local spec
  for spec in "${WHEELS[@]}"; do
    if ! "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp "${platforms[@]}" -d "$CARRY/wheels" "$spec" \
        2>/dev/null; then
      # promise ships only as source: built here, it is pure Python.
      "$py" -m pip wheel -q --disable-pip-version-check --no-deps -w "$CARRY/wheels" "$spec" \
        || { echo "prepare: no wheel for $spec" >&2; return 1; }
    fi
  done
  local stage
  stage=$(mktemp -d)
  "$py" -m asr.data.voice_assistant.engines --pack="$stage/engines" --pack_engines="$PACK_ENGINES" \
    || return 1
  # The free-form text of `base` (asr/data/voice_assistant/textgen.py): without it the plan, and
  # so every split, would differ from the corpus built here.
  mkdir -p "$stage/engines/share/text/fortunes"
  if [[ -d /usr/share/games/fortunes ]]; then
    find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.*' \
      -exec cp {} "$stage/engines/share/text/fortunes/" \;
  fi
  [[ -f /usr/share/dict/american-english ]] && cp /usr/share/dict/american-english "$stage/engines/share/text/"
  echo "prepare: compressing the engines (xz -9, a minute)"
  tar -C "$stage" -cf - engines | xz -9 -T1 >"$CARRY/engines.tar.xz" || return 1
  {
    echo "prepared $(date -u +%F) from commit $(git rev-parse --short HEAD 2>/dev/null)"
    echo "engines: $PACK_ENGINES ($(du -sh "$stage/engines" | cut -f1) unpacked)"
    du -sh "$stage/engines/share/text" | sed 's/^/text sources: /'
  } >"$CARRY/MANIFEST.txt"
  rm -rf "$stage"
  local wheels engines tree total
  wheels=$(du -cb "$CARRY"/wheels/* | tail -1 | cut -f1)
  engines=$(stat -c %s "$CARRY/engines.tar.xz")
  tree=$(tree_bytes)
  total=$((wheels + engines + tree))
  {
    echo "wheels: $(ls "$CARRY/wheels" | wc -l) files, $wheels bytes"
    ls -l "$CARRY/wheels" | awk 'NR > 1 {print "  " $5, $9}'
    echo "engines.tar.xz: $engines bytes"
    echo "working tree: $tree bytes"
    echo "total: $total bytes = $(mib "$total") MiB of $LIMIT_MIB"
  } | tee -a "$CARRY/MANIFEST.txt"
  if (( total > LIMIT_MIB * 1048576 )); then
    echo "prepare: over $LIMIT_MIB MiB: pack fewer engines (PACK_ENGINES=flite,espeak)" >&2
    return 1
  fi
  echo "carry $CARRY (run: bash tools/gpu_oneshot.sh \$OUT base, then rows)"
}

if [[ "${1:-}" == "--prepare" ]]; then
  prepare
  exit $?
fi

USAGE="usage: bash tools/gpu_oneshot.sh --prepare | OUT_DIR [base|rows|all] | --miniature OUT_DIR"
if [[ "${1:-}" == "--miniature" ]]; then
  # The same steps at toy size on this CPU: the `tiny` corpus from the packed engines alone
  # (apt's are on PATH here), the @mini configs, a few steps each. The rows stage finds the
  # base stage's corpus and base, as on a warm machine; FRESH=1 removes them first, as on a
  # fresh one, so that it rebuilds the corpus and trains base_rows (a minute more).
  MINI=1
  OUT=${2:?$USAGE}
  STAGES=(base rows)
  SFX=@mini
  SWEEP=experiments/sweeps/gpu_mini.py
  W=workdirs/gpu_oneshot_mini
  CORPUS=tiny
  STAGE_S=${STAGE_S:-480}   # a bound, not a plan: on an idle CPU each stage ends far sooner
  EVAL_S=40           # a training's last evaluation and exit, after its deadline
  MIN_STEP_S=10
  PY=${PY:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
  rm -rf "$W"
else
  MINI=0
  OUT=${1:?$USAGE}
  case ${2:-base} in
    base) STAGES=(base) ;;
    rows) STAGES=(rows) ;;
    all) STAGES=(base rows) ;;
    *) echo "$USAGE" >&2; exit 2 ;;
  esac
  SFX=''
  SWEEP=experiments/sweeps/gpu.py
  W=workdirs/gpu_oneshot   # ignored: a machine still warm from the last command keeps it
  CORPUS=full
  STAGE_S=${STAGE_S:-540}
  EVAL_S=50           # a row's last evaluation (400 utterances, compiled first) and exit
  MIN_STEP_S=30
  PY=${PY:-python3}
fi
CONFIG=experiments/configs/gpu.py
ENG=$W/engines
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20
export ASR_DATA_DIR=$W/tfds
export ASR_FORTUNES_DIR=$ENG/share/text/fortunes ASR_WORDS_FILE=$ENG/share/text/american-english
# Rows, updates and the report compile the same programs again in new processes: compiled once.
export JAX_COMPILATION_CACHE_DIR=$W/jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1

log() { echo "$*" | tee -a "$LOG"; }
left() { echo $(( STAGE_S - (SECONDS - STAGE_START) - 20 )); }   # 20 s to pack the results
min() { (( $1 < $2 )) && echo "$1" || echo "$2"; }

collect() {   # OUT_DIR afresh from what the stage has so far
  local run dest
  for run in "$W/base" "$W/base_rows" "$W"/amnet/* "$W"/diffs/chains/*/update_*; do
    [[ -d $run ]] || continue
    dest=$R/runs/${run#"$W"/}
    mkdir -p "$dest"
    for f in metrics.jsonl learning_curve.png train_summary.json config.json model_card.md \
             update.json eval.json train/metrics.jsonl train/train_summary.json; do
      [[ -f $run/$f ]] && cp "$run/$f" "$dest/${f//\//_}"
    done
  done
  cp "$W"/amnet/amnet_* "$W"/diffs/diffs_* "$W"/diffs/base_eval.json "$R/" 2>/dev/null
  mkdir -p "$R/corpus"
  for f in "$W"/tfds/voice_assistant/"$CORPUS"/*/{metadata,dataset_info}.json; do
    [[ -f $f ]] && cp "$f" "$R/corpus/"
  done
  $PY -m experiments.oneshot "$W" "$STAGE" >"$R/summary.md" 2>>"$LOG"
  cp "$R/summary.md" "$OUT/summary_$STAGE.md"
  # The log travels inside the archive: OUT may bring back 8 files, and `all` with the base's
  # parts makes 7. Written aside, then renamed: a stage killed mid-write keeps the last one.
  tar -C "$R" -czf "$OUT/results_$STAGE.tar.gz.new" . 2>>"$LOG" \
    && mv -f "$OUT/results_$STAGE.tar.gz.new" "$OUT/results_$STAGE.tar.gz"
}

step() {   # NAME SECONDS COMMAND...: under `timeout`, logged, then OUT_DIR refreshed
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  if (( limit < MIN_STEP_S )); then
    log "=== $name: skipped, ${limit} s left in the stage"
    echo "$name: skipped (${limit} s left)" >>"$R/steps.txt"
    return 1
  fi
  log "=== [$((SECONDS - STAGE_START)) s] $name (limit $limit s): $*"
  timeout -k 15 "$limit" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  log "=== $name: exit $rc after $((SECONDS - t0)) s"
  echo "$name: exit $rc, $((SECONDS - t0)) s (limit $limit s)" >>"$R/steps.txt"
  collect
  return "$rc"
}

train() {   # NAME CONFIG_ROW WORKDIR SECONDS [overrides]: a deadline inside, `timeout` outside
  local name=$1 row=$2 workdir=$3 limit
  limit=$(min "$4" "$(left)")
  shift 4
  step "$name" "$limit" $PY launch.py --config="$CONFIG:$row$SFX" --workdir="$workdir" \
    --config.train.deadline=$(( $(date +%s) + limit - EVAL_S )) "$@"
}

setup() {
  log "=== stage $STAGE on $(hostname), $(nproc) cores, limit $STAGE_S s, $(date -u +%FT%TZ)"
  log "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $(head -1 "$CARRY/MANIFEST.txt" 2>/dev/null)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader 2>&1 | tee -a "$LOG"
  if [[ ! -f $CARRY/engines.tar.xz ]]; then
    log "no $CARRY/engines.tar.xz: run \`bash tools/gpu_oneshot.sh --prepare\` here and carry $CARRY"
    return 1
  fi
  # The wheels only where the image lacks a module: on this CPU every import works already.
  if ! $PY -c "import $IMPORTS" 2>/dev/null; then
    if ! PYTHONPATH=$W/site $PY -c "import $IMPORTS" 2>/dev/null; then
      $PY -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
        --target "$W/site" "$CARRY"/wheels/*.whl 2>&1 | tee -a "$LOG"
    fi
    export PYTHONPATH=$W/site${PYTHONPATH:+:$PYTHONPATH}
    $PY -c "import $IMPORTS" 2>&1 | tee -a "$LOG"
    [[ ${PIPESTATUS[0]} == 0 ]] || { log "the carried wheels do not import"; return 1; }
  fi
  $PY -c 'import jax, flax; print("jax", jax.__version__, jax.devices(), "flax", flax.__version__)' \
    2>&1 | tee -a "$LOG"
  if [[ ! -d $ENG/bin ]]; then
    $PY -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' \
      "$CARRY/engines.tar.xz" "$W" || { log "could not unpack the engines"; return 1; }
  fi
}

corpus() {
  step corpus "$(min "$1" "$(left)")" $PY -m asr.data.voice_assistant.corpus --config=$CORPUS \
    --workers="${WORKERS:-$(nproc)}" --engine_dir="$ENG" --packed_engines_only
}

export_base() {   # WORKDIR: its latest checkpoint -> $W/amnet/full, what every row starts from
  step export "$(min $(( MINI ? 90 : 60 )) "$(left)")" $PY launch.py --config="$CONFIG:base$SFX" --workdir="$1" \
    --mode=export --export_dir="$W/amnet/full"
}

stage_base() {
  corpus $(( MINI ? 90 : 330 )) || return 1
  train base base "$W/base" $(( $(left) - (MINI ? 90 : 60) ))
  export_base "$W/base" || return 1
  # The export comes back at float16 when it is under 40 MB (the paper-size base: 34 MB), in
  # parts under the 16 MiB a returned file may have.
  local bytes
  bytes=$($PY -c 'import sys; from asr import export; print(export.half_copy(*sys.argv[1:]))' \
    "$W/amnet/full" "$W/base_fp16" 2>>"$LOG") || return 1
  if (( bytes < 40000000 )); then
    tar -C "$W" -cf - base_fp16 | split -b 15M - "$OUT/base_fp16.tar.part-"
    log "base export at float16: $bytes bytes -> $OUT/base_fp16.tar.part-* (cat them | tar -x)"
  else
    log "base export at float16: $bytes bytes, over 40 MB: not returned"
  fi
}

stage_rows() {
  corpus $(( MINI ? 90 : 330 )) || return 1
  if [[ ! -f $W/amnet/full/model.npz ]]; then
    # A fresh machine: stage base's export is gone with it. A shorter base of this stage's own,
    # so that the rows still run; the summary's `base_rows` line says it.
    log "no base export on this machine: training a shorter base (base_rows) first"
    rm -rf "$W/amnet" "$W/diffs"
    train base_rows base "$W/base_rows" $(( MINI ? 80 : 150 )) \
      --config.train.steps=$(( MINI ? 8 : 2000 )) --config.train.eval_every=$(( MINI ? 8 : 2000 ))
    export_base "$W/base_rows" || return 1
  fi
  local init=--config.model.encoder.init_from=$W/amnet/full
  train amnet_mf_2sided_upl amnet_mf_2sided_upl "$W/amnet/amnet_mf_2sided_upl" $(( MINI ? 90 : 150 )) "$init"
  train factorized factorized "$W/amnet/factorized" $(( MINI ? 80 : 100 )) "$init"
  train amnet_sparse amnet_sparse "$W/amnet/amnet_sparse" $(( MINI ? 90 : 150 )) "$init"
  step amnet_report "$(min $(( MINI ? 120 : 80 )) "$(left)")" \
    $PY launch.py --mode=report --sweep=$SWEEP --workdir="$W/amnet"
  local limit
  limit=$(left)
  step diffs "$limit" $PY launch.py --config="$CONFIG:diffs$SFX" --mode=diffs \
    --workdir="$W/diffs" --config.diffs.base_workdir="$W/amnet/full" \
    --config.diffs.deadline=$(( $(date +%s) + limit - 15 ))
}

TOTAL_START=$SECONDS
for STAGE in "${STAGES[@]}"; do
  STAGE_START=$SECONDS
  R=$W/results_$STAGE
  rm -rf "$R"
  mkdir -p "$R"
  LOG=$R/log_$STAGE.txt
  : >"$R/steps.txt"
  if (( MINI )) && [[ $STAGE == rows && ${FRESH:-0} == 1 ]]; then
    rm -rf "$W/tfds" "$W/amnet" "$W/base"     # as on a fresh machine
  fi
  setup || { collect; exit 1; }
  "stage_$STAGE"
  log "=== stage $STAGE done after $((SECONDS - STAGE_START)) s"
  collect
done
log "=== all done after $((SECONDS - TOTAL_START)) s; results in $OUT"
