#!/usr/bin/env bash
# One-time set-up, run by every Makefile target: the Debian TTS engines and audio tools the
# embedded corpus needs (apt-get, only what is missing), then a virtual environment in .venv with
# requirements.txt (re-installed when that file changes).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng sox gcc
  libsox-fmt-all fortunes wamerican"
missing=()
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: WARNING: missing Debian packages (${missing[*]}) and no root apt-get;" \
         "the corpus builder will use whichever TTS engines it finds" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
  echo "setup: installing requirements.txt into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  touch .venv/.installed
fi
