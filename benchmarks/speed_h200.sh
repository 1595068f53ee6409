#!/usr/bin/env bash
# Issue 18's GPU benchmarks in one device call on one H200 (docs/performance.md), each against TRL in the same call.
#
# Here, once: bash benchmarks/ablation/prepare.sh (retrain's wheels in .whl), the TRL peer's wheels in .whltrl
# (trl 1.16.0, datasets 4.8.5, dill 0.4.1, multiprocess 0.70.19). Then: device run `bash benchmarks/speed_h200.sh`
# with carry [".whl", ".whltrl"]. The TRL peer is benchmarks/peers/trl_grpo_peer.py (tracked: it travels with the tree).
# Leaves in $OUT: speed-*.json and speed-*.log, one pair per workload:
#   current        8 x 16 x 256 tokens, LoRA r32 (the workload of the 7x result), retrain then TRL (3 steps)
#   async          the same with [training] max_staleness = 1 (no peer: compare with current's TRL)
#   compile        the same with [backend] compile = true (compile time reported once; on an H100 its first step
#                  took longer than 200-250 s, so give it a call of its own: WORKLOADS=compile LIMIT=560)
#   compile-async  both
#   long           8 x 16 x 1024 tokens: decode dominates; retrain (micro-batches of 16 rows: 32 ran out of memory
#                  on an H100) then TRL (2 steps)
#   long-async     the same with max_staleness = 1
#   long-auto      long with micro_batch_size = "auto" (rows sized from free memory), no peer
#   long-auto-trl  long-auto, then TRL (2 steps)
#   current-auto   current with micro_batch_size = "auto", no peer (compare with current's TRL)
#   current-auto-trl  current-auto, then TRL (3 steps)
#   current-whole  current with one micro-batch of all 128 rows, no peer (its peak memory and time)
#   split          current-auto sampling on a second GPU ([inference] device = "gpu:1"; needs 2 GPUs), no peer
#   split-async    split with max_staleness = 1: GPU 1 samples the next batch while GPU 0 trains (INFER_DEVICE=gpu:0:
#                  the copy on the one GPU, a check of the code path on a 1-GPU machine)
#   baseline       current, no peer (what contend-* compare with, in the same call)
#   contend-gil    current, no peer, with a pure-Python thread beside each training step (GIL only)
#   contend-gpu    current, no peer, with a bf16-matmul thread on its own CUDA stream beside it (GPU only)
#   base           current, no peer, with the wheel in .whlbase (a baseline commit: before/after on one card)
#   base-auto      current-auto with the wheel in .whlbase
#   base-long-auto long-auto with the wheel in .whlbase
#   profile        current, no peer, then one step profiled: $OUT/profile/profile-{generate,train}.txt
#   profile-long   long with micro_batch_size = "auto", then one step profiled: $OUT/profile-long/
# WORKLOADS picks and orders them (default: current async compile-async long long-async compile); the
# random-init model is built once per machine in /tmp/qwen-shape. At most 8 files come back from a call and
# a call cut short keeps only what is in $OUT: with several workloads, run them one at a time with OUT
# elsewhere and tar that folder into $OUT after each (e.g. for w in A B; do OUT=/tmp/so WORKLOADS=$w bash
# benchmarks/speed_h200.sh; (cd /tmp/so && tar czf "$D/results.tgz" .); done, with D=$OUT saved first).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/speed-out}; mkdir -p "$OUT"
[ -f /tmp/site/.done ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl .whltrl/*.whl && touch /tmp/site/.done
[ -d .whlbase ] && [ ! -f /tmp/site-base/.done ] && python3 -m pip install -q --no-index --no-deps --no-compile \
  --no-cache-dir --target /tmp/site-base .whlbase/*.whl && touch /tmp/site-base/.done
bench() {  # NAME ARGS...: one workload, its JSON and log in $OUT
  local name=$1; shift
  timeout -k 10 "${LIMIT:-280}" python3 benchmarks/bench_grpo.py --model-dir /tmp/qwen-shape --usl "" \
    --json "$OUT/speed-$name.json" "$@" 2>&1 | grep -v "Warning\|warn(" | tee "$OUT/speed-$name.log" | tail -8
}
for w in ${WORKLOADS:-current async compile-async long long-async compile}; do
  case $w in
    current) bench current --steps 3 --peer benchmarks/peers/trl_grpo_peer.py ;;
    current-auto) bench current-auto --steps 3 --micro-batch auto ;;
    current-auto-trl) bench current-auto-trl --steps 3 --micro-batch auto --peer benchmarks/peers/trl_grpo_peer.py ;;
    current-whole) bench current-whole --steps 3 --micro-batch 128 ;;
    async) bench async --steps 3 --max-staleness 1 ;;
    compile) bench compile --steps 3 --compile-train ;;
    compile-async) bench compile-async --steps 3 --compile-train --max-staleness 1 ;;
    long) bench long --steps 2 --tokens 1024 --micro-batch 16 --peer benchmarks/peers/trl_grpo_peer.py ;;
    long-async) bench long-async --steps 2 --tokens 1024 --micro-batch 16 --max-staleness 1 ;;
    long-auto) bench long-auto --steps 2 --tokens 1024 --micro-batch auto ;;
    long-auto-trl) bench long-auto-trl --steps 2 --tokens 1024 --micro-batch auto --peer benchmarks/peers/trl_grpo_peer.py ;;
    baseline) bench baseline --steps 3 ;;
    split) bench split --steps 3 --micro-batch auto --inference-device "${INFER_DEVICE:-gpu:1}" ;;
    split-async) bench split-async --steps 3 --micro-batch auto --inference-device "${INFER_DEVICE:-gpu:1}" --max-staleness 1 ;;
    contend-gil) bench contend-gil --steps 3 --contend gil ;;
    contend-gpu) bench contend-gpu --steps 3 --contend gpu ;;
    base) PYTHONPATH=/tmp/site-base:/tmp/site bench base --steps 3 ;;
    base-auto) PYTHONPATH=/tmp/site-base:/tmp/site bench base-auto --steps 3 --micro-batch auto ;;
    base-long-auto) PYTHONPATH=/tmp/site-base:/tmp/site bench base-long-auto --steps 2 --tokens 1024 --micro-batch auto ;;
    profile) bench profile --steps 1 --profile "$OUT/profile" ;;
    profile-long) bench profile-long --steps 1 --tokens 1024 --micro-batch auto --profile "$OUT/profile-long" ;;
    *) echo "unknown workload $w" ;;
  esac
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
