#!/usr/bin/env bash
# One command for a lent GPU: Imp-3B-shape stage 2 and stage 1 with random-initialised towers, padded vs
# packed — samples/s, tokens/s, MFU, peak memory, loader headroom. Sized for one H100 well inside 8 minutes
# (--budget-s 420 skips what would run later); not yet run on one.
# Prints a table and writes the JSON to $OUT/gpu_check.json (the device tool's folder), else /tmp.
# Needs only torch, transformers, peft, tokenizers, numpy, pillow, pyyaml, pyarrow (no polars/pydantic,
# no network). `--cpu` runs the reduced mode (tiny shapes, a few steps) that the tests run.
#
#   bash bench/gpu_check.sh            # on the GPU machine (device tool: run with timeout_s 600)
#   bash bench/gpu_check.sh --cpu      # here, in seconds
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec "$PYTHON" -m bench.gpu_check --json "${OUT:-${TMPDIR:-/tmp}}/gpu_check.json" "$@"
