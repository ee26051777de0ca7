# The two commands (README): `make demo` runs the main job, `make test` runs the tests.
# Both set everything up on first use (tools/setup.sh).
PY := .venv/bin/python
WORKDIR ?= workdirs/demo

.PHONY: setup demo test base reproduce bench-reference

setup:
	@bash tools/setup.sh

demo: setup
	$(PY) launch.py --mode=demo --workdir=$(WORKDIR)

test: setup
	$(PY) -m pytest -n 2 -q tests

# The base recognizer (experiments/configs/base.py): builds `full` if needed, trains (resuming),
# then exports it. `pretrained/base` ships the result of this command.
base: setup
	$(PY) launch.py --config=experiments/configs/base.py --workdir=workdirs/base
	$(PY) launch.py --config=experiments/configs/base.py --workdir=workdirs/base --mode=export \
	    --export_dir=workdirs/base/export

# The full-size experiments of both halves on the `full` corpus (run on a GPU machine; see
# README "Running on a GPU"): every AmNet row, then the diff chains, then the report.
reproduce: setup
	$(PY) -m asr.data.voice_assistant.corpus --config=full
	$(PY) launch.py --sweep=experiments/sweeps/amnet_full.py --workdir=workdirs/amnet_full
	$(PY) launch.py --sweep=experiments/sweeps/amnet_full.py --workdir=workdirs/amnet_full --mode=report
	$(PY) launch.py --config=experiments/configs/diffs.py:full --workdir=workdirs/diffs_full --mode=diffs

# Speed side by side with PyTorch (benchmark only: torch is not a dependency of the code).
bench-reference: setup
	$(PY) -m pip install -q -r requirements-bench.txt
	$(PY) launch.py --mode=bench --config=experiments/configs/bench_reference.py:lstm_ctc --workdir=workdirs/bench_reference
