"""The hyper-parameter sweep behind retrain.toml (docs/default-run.md): many runs at once on one GPU.

    python benchmarks/default_run/sweep.py MODEL_DIR VARIANTS.json OUT_DIR [PARALLEL]

VARIANTS.json: [{"name": "B16G8_lr3e-4", "sets": ["training.lr=3e-4", ...], "seeds": [101, 102]}];
each run is ``retrain retrain.toml --seed S --set ...`` in fp32 (the CPU's numerics) with the
model folder given (the converted SmolLM2 GGUF). Results: OUT_DIR/results.jsonl (held-out
accuracy at each evaluation, on all problems and on the first 64; training reward per step).
"""
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time
from pathlib import Path

model_dir, variants_file, out_dir = sys.argv[1:4]
parallel = int(sys.argv[4]) if len(sys.argv) > 4 else 8
out = Path(out_dir)
runs_root = out / "runs"
out.mkdir(parents=True, exist_ok=True)


def accuracy(problems: list[dict]) -> float:
    return round(100 * sum(r["correct"] for r in problems) / len(problems), 1)


def one(name: str, sets: list[str], seed: int) -> dict:
    run = f"{name}-s{seed}"
    args = [sys.executable, "-m", "retrain.cli.main", "retrain.toml", "--seed", str(seed),
            "--set", f'model.model="{model_dir}"', "--set", 'backend.dtype="float32"',
            "--set", f'logging.log_dir="{runs_root}"', "--set", f'logging.run_name="{run}"',
            "--set", 'logging.loggers=["jsonl"]', "--set", "training.save_every=0"]
    for s in sets:
        args += ["--set", s]
    t0 = time.time()
    p = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    acc, acc64 = {}, {}
    for f in sorted((runs_root / run / "eval").glob("step_*.json")):
        d = json.loads(f.read_text())
        acc[d["step"]], acc64[d["step"]] = accuracy(d["problems"]), accuracy(d["problems"][:64])
    metrics = runs_root / run / "metrics.jsonl"
    rows = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.exists() else []
    rec = {"variant": name, "seed": seed, "rc": p.returncode, "secs": round(time.time() - t0), "acc": acc,
           "acc64": acc64, "reward": [round(m["reward/mean"], 3) for m in rows if "reward/mean" in m],
           "err": p.stderr[-600:] if p.returncode else ""}
    with open(out / "results.jsonl", "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(name, seed, p.returncode, rec["secs"], acc, flush=True)
    return rec


jobs = [(v["name"], v["sets"], s) for v in json.loads(Path(variants_file).read_text()) for s in v["seeds"]]
with cf.ThreadPoolExecutor(parallel) as ex:
    records = list(ex.map(lambda j: one(*j), jobs))
by: dict[str, list[dict]] = {}
for r in records:
    by.setdefault(r["variant"], []).append(r)
print("\nmean held-out accuracy over seeds at each evaluated step")
for name, rs in by.items():
    steps = sorted({s for r in rs for s in r["acc"]})
    print(f"{name:28s}", " ".join(f"{s}:{sum(r['acc'].get(s, 0) for r in rs) / len(rs):.1f}" for s in steps))
