#!/usr/bin/env bash
# Determined runs this file (from the context directory's root) in every task container before
# the entrypoint: the searcher task and each trial. It installs hwnas's Python dependencies
# into the image Determined 0.37 uses by default (determinedai/pytorch-ngc:0.37.0, which ships
# torch and determined). hwnas itself needs no install: the entrypoints run from the context
# directory (python3 -m hwnas.driver.determined / python3 -m hwnas.trials.train).
#
# Faster starts: build deploy/Dockerfile once, point environment.image at it; this hook then
# finds everything installed and returns at once.
set -euo pipefail

if python3 -c "import onnx, onnxruntime, pydantic, rich, matplotlib, sklearn, scipy, moocore, yaml" \
    2>/dev/null; then
  exit 0
fi

# Never reinstall torch or determined: the image's builds match its CUDA and the master.
pip_install() { python3 -m pip install --quiet --no-cache-dir "$@"; }
pip_install "numpy>=1.24" "pyyaml>=6" "onnx>=1.16" "pydantic>=2.6" "rich>=13" \
  "matplotlib>=3.7" "scikit-learn>=1.3" "scipy>=1.10" "moocore>=0.1.8"

# onnxruntime and onnxruntime-gpu install the same module and break each other: pick one.
if python3 -c "import onnxruntime" 2>/dev/null; then
  :  # the image already has one of them
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  pip_install "onnxruntime-gpu>=1.17" "nvidia-ml-py>=12"
else
  pip_install "onnxruntime>=1.17"
fi
