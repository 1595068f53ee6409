"""Peak resident memory of a retrain command (default: the default run, truncated to 2 steps).

    python benchmarks/memory/peak_rss.py                      # retrain retrain.toml --set training.max_steps=2
    python benchmarks/memory/peak_rss.py --steps 1 --out peak.json
    python benchmarks/memory/peak_rss.py -- retrain my.toml --set training.max_steps=3

Reports two numbers:
- ``ru_maxrss``: the high-water mark of the largest single process of the command (the kernel's
  RUSAGE_CHILDREN: the biggest of the command and every descendant it waited for);
- ``tree_peak``: the largest *sum* of the resident memory of the command and all its descendants
  (reward workers included), sampled from /proc every 50 ms (Linux only; a short spike between
  two samples can be missed, which is why ru_maxrss is reported too).

The peak of the default run comes early (model load, first evaluation, first step), so two steps
measure it; the benchmark does not need the 20-step job. Run it alone on the machine: RSS does not
depend on load, but the wall time it prints does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and every descendant (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm") as f:
                rss[int(entry)] = int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))  # fields[1]: the parent pid
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def measure(cmd: list[str], env: dict[str, str] | None = None, interval: float = 0.05) -> dict[str, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(interval)
    wall = time.perf_counter() - start
    maxrss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return {"returncode": proc.returncode, "ru_maxrss_gb": maxrss_kib * 1024 / 1e9, "tree_peak_gb": peak / 1e9,
            "wall_s": wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2, help="training.max_steps of the default run (default 2)")
    ap.add_argument("--config", default="retrain.toml")
    ap.add_argument("--out", type=Path, help="write the numbers here as JSON")
    ap.add_argument("cmd", nargs="*", help="a command to measure instead (after --)")
    args = ap.parse_args()
    retrain = str(Path(sys.executable).with_name("retrain"))
    cmd = args.cmd or [retrain, args.config, "--set", f"training.max_steps={args.steps}",
                       "--set", "logging.log_dir=\"/tmp/retrain-peak-rss\""]
    result = measure(cmd)
    result["command"] = " ".join(cmd)
    print(f"peak resident memory: {result['ru_maxrss_gb']:.2f} GB (largest process, ru_maxrss), "
          f"{result['tree_peak_gb']:.2f} GB (process tree, sampled); wall {result['wall_s']:.0f} s; "
          f"exit {result['returncode']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return int(result["returncode"])


if __name__ == "__main__":
    raise SystemExit(main())
