"""docs/results.md's tables and learning curves from the ablation's raw results.

    python benchmarks/ablation/build_results.py ablation-runs.tar.gz [--gpu-mem gpu_mem.csv] [--out docs/results]

Input: the tarball that benchmarks/ablation/run_h200.sh leaves in $OUT (or a campaign folder).
Output (under --out, default docs/results/): ``ablation.md`` (the tables to paste into
docs/results.md), ``reward.png`` and ``eval.png`` (learning curves: mean over seeds with a ± std
band), ``ablation-summary.json`` (``retrain campaign summary --json``). Every number comes from the
runs' metrics.jsonl through retrain's own summary (``retrain.campaign.summary``): the same
Student-t intervals and paired-by-seed differences as ``retrain campaign summary``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from retrain.campaign import rundir
from retrain.campaign.stats import estimate
from retrain.campaign.summary import discover, summarize

BASELINE = "grpo"


def campaign_dir(source: Path, scratch: Path) -> Path:
    if source.is_dir():
        return source
    with tarfile.open(source) as tar:
        tar.extractall(scratch, filter="data")
    return scratch / "ablation"


def first_value(run_dir: Path, metric: str) -> float | None:
    for row in rundir.read_metrics(run_dir):
        if isinstance(row.get(metric), (int, float)):
            return float(row[metric])
    return None


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def ci_pct(ci: list[float] | None) -> str:
    return "n<2" if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def run_times(camp: Path) -> dict[str, dict[str, Any]]:
    """run -> {"seconds": wall seconds summed over attempts, "pids": [...]} from manifest.json."""
    manifest = json.loads((camp / "manifest.json").read_text()) if (camp / "manifest.json").is_file() else {"runs": {}}
    out = {}
    for name, run in manifest["runs"].items():
        secs, pids = 0.0, []
        for a in run.get("attempts", []):
            if a.get("start") and a.get("end"):
                secs += (dt.datetime.fromisoformat(a["end"]) - dt.datetime.fromisoformat(a["start"])).total_seconds()
            if a.get("pid"):
                pids.append(int(a["pid"]))
        out[name] = {"seconds": secs, "pids": pids}
    return out


def gpu_peaks(csv_path: Path | None) -> dict[int, float]:
    """pid -> peak GPU memory (MiB) from nvidia-smi samples ``time, pid, used_memory``."""
    peaks: dict[int, float] = {}
    if csv_path is None or not csv_path.is_file():
        return peaks
    for row in csv.reader(csv_path.read_text().splitlines()):
        try:
            pid, mib = int(row[1]), float(row[2])
        except (IndexError, ValueError):
            continue
        peaks[pid] = max(peaks.get(pid, 0.0), mib)
    return peaks


def before_value(run_dir: Path, metric: str, base: dict[str, float] | None) -> float | None:
    """The held-out value at step 0: the run's own evaluation, else the base model's (``--base-eval``)."""
    for row in rundir.read_metrics(run_dir):
        if row.get("step") == 0 and isinstance(row.get(metric), (int, float)):
            return float(row[metric])
    return None if base is None else base.get(metric)


def build(camp: Path, out: Path, gpu_csv: Path | None, base: dict[str, float] | None = None) -> str:
    runs = discover(camp)
    metrics = [m for m in ("eval/pass@1", "eval/pass@8") if any(first_value(r.run_dir, m) is not None for r in runs)]
    summary = summarize(camp, metrics + ["reward/mean"], baseline=BASELINE)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["| condition | seeds | " + " | ".join(f"{m[5:]} before | {m[5:]} after [95% CI] | gain [95% CI]"
                                                   for m in metrics) + " |",
             "|---|---|" + "---|---|---|" * len(metrics)]
    for cond, entry in summary["conditions"].items():
        cells = [cond, str(entry.get(metrics[0], {}).get("n", 0)) if metrics else "0"]
        for m in metrics:
            v = entry.get(m)
            if not v:
                cells += ["-", "-", "-"]
                continue
            mine = [r for r in runs if r.condition == cond and r.seed in v["seeds"]]
            before = [before_value(r.run_dir, m, base) for r in mine]
            known = [b for b in before if b is not None]
            gain_cell = "-"  # no step 0 at all: neither the runs' own nor --base-eval
            if known:
                gains = estimate([a - b for a, b in zip(v["finals"], before, strict=True) if b is not None])
                gain_cell = f"{100 * gains.mean:+.1f} {ci_pct(list(gains.ci95) if gains.ci95 else None)}"
            cells += [pct(sum(known) / len(known)) if known else "-",
                      f"{pct(v['final_mean'])} {ci_pct(v['final_ci95'])}", gain_cell]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Paired by seed against {BASELINE} (final value minus {BASELINE}'s, same seed):", "",
              "| condition | metric | seeds | mean difference (points) | 95% CI | |", "|---|---|---|---|---|---|"]
    for cond, entry in summary["paired"].items():
        for m in metrics + ["reward/mean"]:
            d = entry.get(m)
            if d:
                lines.append(f"| {cond} | {m} | {d['n']} | {100 * d['mean']:+.1f} | {ci_pct(d['ci95'])} | "
                             f"{'-' if d['ci95'] is None else 'includes 0' if d['includes_zero'] else 'excludes 0'} |")
    times, peaks = run_times(camp), gpu_peaks(gpu_csv)
    lines += ["", "| run | wall time (min, all attempts) | peak GPU memory (MiB, nvidia-smi) |", "|---|---|---|"]
    for info in runs:
        t = times.get(info.name, {"seconds": 0.0, "pids": []})
        peak = max((peaks.get(p, 0.0) for p in t["pids"]), default=0.0)
        lines.append(f"| {info.name} | {t['seconds'] / 60:.1f} | {peak:.0f} |" if peak else
                     f"| {info.name} | {t['seconds'] / 60:.1f} | - |")
    from retrain.campaign.plots import plot_campaign

    for png in plot_campaign(camp, out):
        lines.append(f"\n![{png.stem}]({png.name})")
    text = "\n".join(lines) + "\n"
    (out / "ablation.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="ablation-runs.tar.gz or a campaign folder")
    ap.add_argument("--gpu-mem", type=Path, help="gpu_mem.csv from the same device calls")
    ap.add_argument("--base-eval", type=Path, help="the base model's held-out report (retrain eval --out): step 0 "
                    "of runs that skipped their own (eval.at_start = false)")
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    args = ap.parse_args()
    base = json.loads(args.base_eval.read_text())["metrics"] if args.base_eval else None
    with tempfile.TemporaryDirectory() as scratch:
        print(build(campaign_dir(args.source, Path(scratch)), args.out, args.gpu_mem, base))


if __name__ == "__main__":
    main()
