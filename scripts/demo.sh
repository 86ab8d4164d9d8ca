#!/usr/bin/env bash
# Set up .venv and run the whole DUSTrack loop headless on the built-in simulated cine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/napari-dustrack demo --out "${1:-demo-out}"
