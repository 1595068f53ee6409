#!/usr/bin/env bash
# Run the model-facing tests against the lowest transformers retrain-core allows (docs/install.md).
#   scripts/test_min_versions.sh            (uses .venv; ~30 s to install, ~1-2 min of tests on 2 cores)
# transformers 4.56.0 and the tokenizers / huggingface_hub it accepts are installed with
# `pip --target` into .min-versions/ and put first on PYTHONPATH, so .venv itself is not changed.
# torch stays at the installed version: the index here has no CPU wheel of torch 2.6.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=.min-versions
PY=.venv/bin/python
[ -d "$TARGET/transformers" ] || "$PY" -m pip install -q --no-deps --target "$TARGET" \
  "transformers==4.56.0" "tokenizers>=0.22,<0.23" "huggingface_hub>=0.34,<1.0"
PYTHONPATH="$PWD/$TARGET" "$PY" -c 'import transformers; assert transformers.__version__ == "4.56.0", transformers.__version__; print("transformers", transformers.__version__)'
# A model cache of its own: a GGUF converted by transformers 5 writes a tokenizer config 4.56 cannot read.
RETRAIN_CACHE_DIR="$PWD/$TARGET/cache" PYTHONPATH="$PWD/$TARGET" "$PY" -m pytest -q -x -p no:cacheprovider \
  tests/core/test_backend_engine.py tests/core/test_loss_agg.py tests/data/test_prompts.py tests/data/test_models.py "$@"
