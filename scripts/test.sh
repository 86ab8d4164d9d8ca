#!/usr/bin/env bash
# Set up everything (Debian packages, .venv) and run the whole test suite under Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
