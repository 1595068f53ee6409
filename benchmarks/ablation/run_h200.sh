#!/usr/bin/env bash
# The ablation of examples/ablation.toml on one H200, in a few device calls (docs/results.md).
#
# Here, once:  bash benchmarks/ablation/prepare.sh        (GGUF halves + wheels, git-ignored)
# Then device calls, each within the machine's 30 s warm window after the previous one:
#   1. bash benchmarks/ablation/run_h200.sh a      carry [".bench/ablation/a"]             (~1 min)
#   2. bash benchmarks/ablation/run_h200.sh b      carry [".bench/ablation/b", ".whl"]     (~9.5 min)
#   3. bash benchmarks/ablation/run_h200.sh more   carry [".whl"]                          (~9.5 min; repeat
#      until it prints "campaign complete"; with time left, it then runs the default retrain.toml, and
#      with ANCHOR_AFTER=1 first the addition anchor (alone on the GPU) if it has not run yet)
#   (any time after call 2) bash benchmarks/ablation/run_h200.sh default   carry [".whl"]   (~3 min)
#   (any time after call 2) bash benchmarks/ablation/run_h200.sh anchor    carry [".whl"]   (the addition anchor
#      alone, then the default run: issue 17.4 and 17.3 in one call; right after call 1, carry .bench/ablation/b too)
# A campaign that a machine did not finish goes on on the next machine: put the last call's ablation-runs.tar.gz
# in .bench/ablation/resume/ and add that folder to call 2's carry (its finished runs are kept, the others rerun).
# Call 2 assembles the model, installs what is missing and starts the campaign (ANCHOR_FIRST=1: the addition
# anchor first; PARITY=1: issue 18's parity runs beside the campaign), as many runs at once as the
# GPU's memory holds (WORKERS overrides); every call stops the campaign before the 10-minute limit with SIGINT (each run
# finishes its step and checkpoints) and resumes it in the next call (the campaign folder lives
# in /tmp while the machine stays warm; a fresh machine starts again at call 1).
# Every call leaves in $OUT: ablation-runs.tar.gz (manifest, metrics.jsonl, configs, logs,
# summary; eval reports without samples), gpu_mem.csv (per-process GPU memory, sampled),
# status.txt, and once they are done base_eval.json (the base model's held-out report, "before"),
# parity.json (issue 18's max_staleness 0 vs 1), side-logs.tar.gz; call b also anchor.json/.log.
# Build the tables: python benchmarks/ablation/build_results.py ablation-runs.tar.gz --base-eval base_eval.json
set -uo pipefail
phase=${1:?usage: run_h200.sh a|b|more|default|anchor}
start=$(date +%s)
budget=${ABLATION_SECONDS:-530}    # seconds of this call until the campaign is stopped (limit 600 s, minus packing)
root=/tmp/ablation
mkdir -p "$root"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 RETRAIN_CACHE_DIR=$root/cache PYTHONPATH=/tmp/site
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
# runs at once: with whole-batch training a run peaked at 31.6 GiB of GPU memory (the step-1 train step), so
# 10 at once ran out on an H100 (benchmarks/results/ablation/2026-12-05-h100-pilot); in micro-batches of 16 rows
# a run peaks at 8.5 GiB (allocator; 2026-12-05-h100-pilot2); in micro-batches of 64 rows (examples/ablation.toml now)
# at 19.0 GiB (allocator), 21.1 GiB in nvidia-smi (2026-12-05-h100-campaign, where 5 at once ran out of memory):
# 22 GiB a run, 3 on an H100, 6 on an H200; WORKERS overrides. Every step logs memory/gpu_peak_gib.
gpu_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1)
gpu_mib=${gpu_mib:-22528}  # no nvidia-smi: one run at a time
workers=${WORKERS:-$(( gpu_mib / 22528 ))}; workers=$(( workers < 1 ? 1 : (workers > 20 ? 20 : workers) ))
OUT=${OUT:-$root/out}; mkdir -p "$OUT"

if [ "$phase" = a ]; then
  cp .bench/ablation/a/smollm2.gguf.part "$root/a.part" && ls -la "$root" && exit 0
  exit 1
fi

anchor_run() {  # issue 17.4, alone on the GPU: a plain GRPO loop against retrain's recipe (limit: $1 s)
  local dir
  dir=$(python3 -c "from retrain.models import convert_gguf; from pathlib import Path; print(convert_gguf(Path('$root/smollm2.gguf')))")
  timeout -k 10 "$1" python3 benchmarks/addition_anchor/anchor.py --model "$dir" --out "$OUT/anchor.json" 2>&1 \
    | tee "$root/anchor.log" | grep -v Warning; cp "$root/anchor.log" "$OUT/"
}

assemble_model() {  # the GGUF from phase a's half (on this machine) and the carried second half, checked
  cat "$root/a.part" .bench/ablation/b/smollm2.gguf.part > "$root/smollm2.gguf"
  echo "$(cat .bench/ablation/b/smollm2.gguf.sha256)  $root/smollm2.gguf" | sha256sum -c -
}

install() {  # the wheels of prepare.sh (retrain, retrain-hicra, gguf, math-verify, ...) into /tmp/site, once
  [ -f /tmp/site/.done ] && return 0
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && touch /tmp/site/.done
}

pilot_runs() {  # PILOT=1 with phase b: one run per variant of examples/ablation.toml, all at once, until the
  # call's budget (no evaluations: the training reward/mean is the solve rate at T = 0.7); each logs reward/mean,
  # adv/zero_frac (groups without signal) and memory/gpu_peak_gib per step
  local left=$(( budget - ($(date +%s) - start) )) name sets pids=()
  echo "pilot for $left s"
  # variants of the file as it is now; the 2026-12-05 pilot that chose its task (level 1, 4 worked examples,
  # G = 16) ran this mode against the file of 21e361e (benchmarks/results/ablation/2026-12-05-h100-pilot2)
  for variant in "g16-l1:" "g8-l1:--set training.group_size=8" "g16-l123:--set data.levels=[1,2,3]"; do
    name=${variant%%:*}; sets=${variant#*:}
    timeout -s INT -k 20 "$left" python3 -m retrain.cli.main examples/ablation.toml --set "model.model=\"$root/smollm2.gguf\"" \
      --set 'campaign.seeds=[]' --set 'campaign.conditions=[]' --set 'algorithm.transform_mode="none"' \
      --set "logging.log_dir=\"$root/pilot\"" --set "logging.run_name=\"$name\"" --set 'logging.loggers=["jsonl"]' \
      --set eval.at_start=false --set training.max_steps=200 --set training.seed=1 $sets > "$root/pilot-$name.log" 2>&1 &
    pids+=($!); sleep 2
  done
  wait "${pids[@]}"
  for d in "$root"/pilot/*/; do n=$(basename "$d"); cp "$d/metrics.jsonl" "$OUT/pilot-$n-metrics.jsonl" 2>/dev/null
    tail -3 "$root/pilot-$n.log"; done
  ( cd "$root" && tar czf "$OUT/pilot-logs.tar.gz" pilot-*.log )
}

if [ "$phase" = b ]; then
  [ -f "$root/a.part" ] || { echo "error: $root/a.part missing: run phase a first (same warm machine)"; exit 1; }
  assemble_model || exit 1
  install || exit 1
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
  t0=$(date +%s)
  model_dir=$(python3 -c "from retrain.models import convert_gguf; from pathlib import Path; print(convert_gguf(Path('$root/smollm2.gguf')))") || exit 1
  echo "GGUF conversion: $(( $(date +%s) - t0 )) s -> $model_dir"
  [ "${ANCHOR_FIRST:-0}" = 1 ] && anchor_run 240
  if [ "${PARITY:-0}" = 1 ]; then  # issue 18's learning parity beside the campaign (accuracies only: its times
    # are under the campaign's load); setsid: it outlives this call, the next call brings parity.json back
    setsid timeout -k 10 900 python3 benchmarks/addition_anchor/anchor.py --model "$model_dir" --parity 1,2 \
      --out "$root/parity.json" > "$root/parity.log" 2>&1 < /dev/null &
  fi
  if [ "${PILOT:-0}" = 1 ]; then  # task pilot instead of the campaign: variants side by side, one run each
    pilot_runs "$model_dir"; exit
  fi
elif [ "$phase" = more ] || [ "$phase" = default ] || [ "$phase" = anchor ]; then
  if [ ! -f "$root/smollm2.gguf" ] && [ -f "$root/a.part" ] && [ -f .bench/ablation/b/smollm2.gguf.part ]; then
    assemble_model || exit 1  # right after phase a (carry .bench/ablation/b too): the model, no campaign
  fi
  [ -f "$root/smollm2.gguf" ] || { echo "error: no model on this machine: start again with phase a"; exit 1; }
  install || exit 1
else
  echo "usage: run_h200.sh a|b|more|default|anchor"; exit 2
fi

default_run() {  # issue 17.3: the default retrain.toml on the GPU, with its per-step times and memory peaks
  # DEFAULT_SETS: more --set options (word-split), DEFAULT_NAME: the files' name (variants side by side in $OUT)
  local name=${DEFAULT_NAME:-default-run}
  # shellcheck disable=SC2086
  timeout -s INT -k 20 "$1" python3 -m retrain.cli.main retrain.toml --set "model.model=\"$root/smollm2.gguf\"" \
    --set "logging.log_dir=\"$root/$name\"" --set 'logging.loggers=["jsonl"]' ${DEFAULT_SETS:-} 2>&1 \
    | grep -v "Converting\|Loading weights" | tee "$OUT/$name.log"
  cp "$root/$name"/*/metrics.jsonl "$OUT/$name-metrics.jsonl" 2>/dev/null
}
if [ "$phase" = default ]; then default_run 540; exit; fi
if [ "$phase" = anchor ]; then  # issue 17.4 alone on the GPU, then 17.3 in what is left of the call
  anchor_run 270; [ -f "$OUT/anchor.json" ] && touch "$root/anchor.done"
  left=$(( 560 - ($(date +%s) - start) )); [ $left -gt 120 ] && { echo "default run for $left s"; default_run $left; }
  exit
fi

# a campaign started on an earlier machine: its packed runs (carried as .bench/ablation/resume/ablation-runs.tar.gz)
# seed the campaign folder; finished runs are skipped, unfinished ones start over (checkpoints are not packed)
if [ ! -d "$root/runs/ablation" ] && [ -f .bench/ablation/resume/ablation-runs.tar.gz ]; then
  mkdir -p "$root/runs" && tar xzf .bench/ablation/resume/ablation-runs.tar.gz -C "$root/runs" \
    && echo "resuming the campaign of .bench/ablation/resume/ablation-runs.tar.gz"
fi
# GPU memory of every process, every 5 s (nvidia-smi), for the per-run peak in docs/results.md
( while true; do nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits \
    | sed "s/^/$(date +%s), /" >> "$OUT/gpu_mem.csv"; sleep 5; done ) &
sampler=$!
# Step 0 is the same model for every run (the LoRA adapters start at zero; the held-out problems and the
# evaluation's sampling seed do not depend on the run's seed), so the base model is evaluated once here
# instead of 20 times (--set eval.at_start=false below); build_results.py --base-eval uses it as "before".
if [ ! -f "$root/base_eval.json" ] && [ "$phase" = b ]; then
  setsid python3 -m retrain.cli.main eval examples/ablation.toml --set "model.model=\"$root/smollm2.gguf\"" \
    --set "logging.log_dir=\"$root/base\"" --out "$root/base_eval.json" > "$root/base_eval.log" 2>&1 < /dev/null &
fi
left=$(( budget - ($(date +%s) - start) ))
echo "campaign for $left s, $workers runs at once"
timeout -s INT -k 30 "$left" python3 -m retrain.cli.main examples/ablation.toml \
  --set "model.model=\"$root/smollm2.gguf\"" --set "logging.log_dir=\"$root/runs\"" \
  --set 'logging.loggers=["jsonl"]' --set campaign.max_workers=$workers --set campaign.stagger_seconds=2.0 --set eval.at_start=false
rc=$?
kill $sampler 2>/dev/null
python3 benchmarks/ablation/pack.py "$root/runs/ablation" "$OUT"
for f in parity.json base_eval.json; do [ -f "$root/$f" ] && cp "$root/$f" "$OUT/"; done
# the side jobs' logs in one file (a call brings back at most 8 files)
( cd "$root" && tar czf "$OUT/side-logs.tar.gz" $(ls parity.log base_eval.log 2>/dev/null) ) 2>/dev/null
python3 -m retrain.cli.main campaign status "$root/runs/ablation" | tee "$OUT/status.txt"
if [ $rc -eq 0 ]; then echo "campaign complete"; else echo "campaign stopped (exit $rc): run phase 'more' next"; fi
left=$(( 560 - ($(date +%s) - start) ))
if [ $rc -eq 0 ] && [ "${ANCHOR_AFTER:-0}" = 1 ] && [ ! -f "$root/anchor.done" ] && [ $left -gt 200 ]; then
  anchor_run $(( left < 260 ? left - 20 : 240 )); [ -f "$OUT/anchor.json" ] && touch "$root/anchor.done"
fi
left=$(( 560 - ($(date +%s) - start) ))
if [ $rc -eq 0 ] && [ $left -gt 150 ]; then echo "default run for $left s"; default_run $left; fi
