# The two commands (README): `make demo` runs the main job, `make test` runs the tests.
# Both set everything up on first use (tools/setup.sh).
PY := .venv/bin/python
WORKDIR ?= workdirs/demo

.PHONY: setup demo test

setup:
	@bash tools/setup.sh

demo: setup
	$(PY) launch.py --mode=demo --workdir=$(WORKDIR)

test: setup
	$(PY) -m pytest -n 2 -q tests
