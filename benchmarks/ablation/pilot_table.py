"""The task pilot's table (run_h200.sh b with PILOT=1): one row per variant from its pilot-*-metrics.jsonl.

    python benchmarks/ablation/pilot_table.py DIR     # the folder holding pilot-NAME-metrics.jsonl files

Per variant: training steps logged, mean seconds per step, train reward (the solve rate at the sampling
temperature) over the first and the last 10 steps, the fraction of rows with zero advantage (groups
whose samples all scored the same: no training signal) over the same windows, and the GPU memory peak.
"""

from __future__ import annotations

import sys
from pathlib import Path

from retrain.campaign import rundir


def mean(rows: list[dict], key: str) -> float:
    values = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return sum(values) / len(values) if values else float("nan")


def table(folder: Path) -> str:
    lines = ["| variant | steps | s/step | reward, first 10 / last 10 | zero-advantage rows, first 10 / last 10 | GPU peak GiB |",
             "|---|---|---|---|---|---|"]
    for path in sorted(folder.glob("pilot-*-metrics.jsonl")):
        name = path.name[len("pilot-"):-len("-metrics.jsonl")]
        rows = [r for r in rundir.read_metrics_file(path) if "reward/mean" in r]
        first, last = rows[:10], rows[-10:]
        peak = max((float(r.get("memory/gpu_peak_gib", 0.0)) for r in rows), default=float("nan"))
        lines.append(f"| {name} | {len(rows)} | {mean(rows, 'time/step'):.2f} | "
                     f"{100 * mean(first, 'reward/mean'):.1f}% / {100 * mean(last, 'reward/mean'):.1f}% | "
                     f"{100 * mean(first, 'adv/zero_frac'):.0f}% / {100 * mean(last, 'adv/zero_frac'):.0f}% | {peak:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
