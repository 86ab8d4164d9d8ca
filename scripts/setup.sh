#!/usr/bin/env bash
# Create .venv and install napari-dustrack with everything the demo and the tests need.
# Idempotent: a second run only reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.dustrack-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch and torchvision as a matching pair (timm, used by segmentation-models-pytorch, needs both)
  .venv/bin/python -m pip install -q "torch>=2.1,<=2.14.1" "torchvision<=0.29.1"
  .venv/bin/python -m pip install -q -e ".[testing]"
  echo "$want" > "$stamp"
fi
