#!/usr/bin/env bash
# Create (or reuse) .venv with hwnas and its CPU, Determined and dev extras.
# Re-installs only when pyproject.toml changed since the last successful set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.hwnas-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # Pin torch first: the CPU build of 2.13.0 is on this machine's disk; an open range
  # would pull a multi-GB CUDA build.
  .venv/bin/python -m pip install -q "torch==${HWNAS_TORCH_VERSION:-2.13.0}"
  .venv/bin/python -m pip install -q -e ".[cpu,determined,dev]"
  echo "$want" > "$stamp"
fi
