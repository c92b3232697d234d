#!/usr/bin/env bash
# Install the project with its test extras into .venv and run the test suite (README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned: 2.13.0 is the CPU wheel on disk; a bare newer torch would download gigabytes.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[train,dev]"
python -m pytest -q -p no:cacheprovider "$@"
