#!/usr/bin/env bash
# Install the project into .venv and run the demo end to end on the embedded fixture data (README's main command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[train]"
imp-data demo --data-root "${1:-demo-data}"
