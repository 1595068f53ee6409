"""docs/results.md's tables and learning curves from the ablation's raw results.

    python benchmarks/ablation/build_results.py ablation-runs.tar.gz [--base-eval base_eval.json]
        [--gpu-mem gpu_mem.csv ...] [--out docs/results]

Input: the tarball that benchmarks/ablation/run_h200.sh leaves in $OUT (or a campaign folder).
Output (under --out, default docs/results/): ``ablation.md`` (the tables to paste into
docs/results.md), ``reward.png`` (training reward per step: mean over seeds with a ± std band),
``finals.png`` (held-out pass@1 and pass@8 after training per condition with 95% intervals, the base
model's as a line or in the title), ``eval.png`` only when the runs evaluated more than once, ``ablation-summary.json`` (``retrain campaign summary --json``). Every number comes from the
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


def gpu_peaks(csv_paths: list[Path]) -> dict[int, float]:
    """pid -> peak GPU memory (MiB) from nvidia-smi samples ``time, pid, used_memory`` (one file per call)."""
    peaks: dict[int, float] = {}
    for csv_path in csv_paths:
        for row in csv.reader(csv_path.read_text().splitlines() if csv_path.is_file() else []):
            try:
                pid, mib = int(row[1]), float(row[2])
            except (IndexError, ValueError):
                continue
            peaks[pid] = max(peaks.get(pid, 0.0), mib)
    return peaks


def step_stats(run_dir: Path) -> tuple[int, float | None, float | None]:
    """(training steps, median seconds a step from step 2 on (step 1 warms up), allocator peak GiB)."""
    rows = [r for r in rundir.read_metrics(run_dir) if isinstance(r.get("time/step"), (int, float))]
    times = sorted(r["time/step"] for r in rows if r.get("step", 0) >= 2)
    peaks = [r["memory/gpu_peak_gib"] for r in rows if isinstance(r.get("memory/gpu_peak_gib"), (int, float))]
    return len(rows), (times[len(times) // 2] if times else None), (max(peaks) if peaks else None)


LATE_KEYS = ("reward/mean", "entropy/mean", "adv/zero_frac", "completion/length_mean")


def late_means(run_dir: Path, last: int = 10) -> dict[str, float]:
    """Each of ``LATE_KEYS`` averaged over the run's last ``last`` training steps (a steadier "after" for
    training metrics than the final step alone, which is one batch of prompts)."""
    rows = [r for r in rundir.read_metrics(run_dir) if isinstance(r.get("reward/mean"), (int, float))][-last:]
    return {k: sum(r[k] for r in rows) / len(rows) for k in LATE_KEYS if rows and all(k in r for r in rows)}


def late_table(runs: list[Any]) -> list[str]:
    """Per condition: the last-10-step means over seeds (95% interval) and, for reward and entropy, the
    paired-by-seed difference against the baseline."""
    late = {(r.condition, r.seed): late_means(r.run_dir) for r in runs}
    conds = list(dict.fromkeys(r.condition for r in runs))
    lines = ["| condition | reward [95% CI] | vs grpo | entropy [95% CI] | vs grpo | zero-advantage rows | "
             "completion tokens |", "|---|---|---|---|---|---|---|"]
    for cond in conds:
        seeds = sorted(s for c, s in late if c == cond)
        cells = [cond]
        for key, scale, places in (("reward/mean", 100, 1), ("entropy/mean", 1, 3)):
            def num(x: float, sign: str = "", scale: float = scale, places: int = places) -> str:
                return f"{scale * x:{sign}.{places}f}"

            if any(key not in late[(cond, s)] for s in seeds):
                cells += ["-", "-"]
                continue
            est = estimate([late[(cond, s)][key] for s in seeds])
            ci = "n<2" if est.ci95 is None else f"[{num(est.ci95[0])}, {num(est.ci95[1])}]"
            cells.append(f"{num(est.mean)} {ci}")
            both = [s for s in seeds if key in late.get((BASELINE, s), {})]
            if cond == BASELINE or not both:
                cells.append("-")
                continue
            d = estimate([late[(cond, s)][key] - late[(BASELINE, s)][key] for s in both])
            tag = "" if d.ci95 is None else (" (includes 0)" if d.ci95[0] <= 0 <= d.ci95[1] else " (excludes 0)")
            cells.append(f"{num(d.mean, '+')}" + (f" [{num(d.ci95[0])}, {num(d.ci95[1])}]" if d.ci95 else "") + tag)
        for key, form in (("adv/zero_frac", "{:.0%}"), ("completion/length_mean", "{:.1f}")):
            known = [late[(cond, s)][key] for s in seeds if key in late[(cond, s)]]
            cells.append(form.format(sum(known) / len(known)) if len(known) == len(seeds) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_finals(summary: dict[str, Any], metrics: list[str], base: dict[str, float] | None, out: Path) -> Path:
    """Per condition, each metric's final mean over seeds with its 95% interval and the seeds; the base model
    dashed, or in the title when it is off the conditions' scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = list(summary["conditions"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        for i, cond in enumerate(conds):
            v = summary["conditions"][cond].get(m)
            if not v:
                continue
            lo, hi = v["final_ci95"] or (v["final_mean"], v["final_mean"])
            ax.errorbar([i], [100 * v["final_mean"]], yerr=[[100 * (v["final_mean"] - lo)], [100 * (hi - v["final_mean"])]],
                        fmt="o", capsize=4, color=f"C{i}")
            ax.scatter([i] * len(v["finals"]), [100 * f for f in v["finals"]], s=10, color=f"C{i}", alpha=0.4)
        title = f"{m[5:]} after training: mean, 95% CI, seeds"
        if base and m in base:  # a line where it fits the conditions' scale, else in the title (their spread stays readable)
            lo, hi = ax.get_ylim()
            if lo <= 100 * base[m] <= hi:
                ax.axhline(100 * base[m], ls="--", color="gray", label=f"base model {100 * base[m]:.1f}")
                ax.legend(fontsize=8, loc="lower right")
            else:
                title += f"\n(base model before training: {100 * base[m]:.1f})"
        ax.set_xticks(range(len(conds)), conds, rotation=25, ha="right", fontsize=8)
        ax.set_ylabel(f"held-out {m[5:]} (%)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "finals.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def before_value(run_dir: Path, metric: str, base: dict[str, float] | None) -> float | None:
    """The held-out value at step 0: the run's own evaluation, else the base model's (``--base-eval``)."""
    for row in rundir.read_metrics(run_dir):
        if row.get("step") == 0 and isinstance(row.get(metric), (int, float)):
            return float(row[metric])
    return None if base is None else base.get(metric)


def build(camp: Path, out: Path, gpu_csvs: list[Path], base: dict[str, float] | None = None) -> str:
    runs = discover(camp)
    metrics = [m for m in ("eval/pass@1", "eval/pass@8", "eval/mean@8") if any(first_value(r.run_dir, m) is not None for r in runs)]
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
                lines.append(f"| {cond} | {m if m.startswith('eval/') else m + ' at the last step'} | {d['n']} | {100 * d['mean']:+.1f} | {ci_pct(d['ci95'])} | "
                             f"{'-' if d['ci95'] is None else 'includes 0' if d['includes_zero'] else 'excludes 0'} |")
    lines += ["", "Training metrics over the last 10 steps (21-30), mean over seeds; reward in %, entropy in nats "
              "a token; differences paired by seed:", ""] + late_table(runs)
    times, peaks = run_times(camp), gpu_peaks(gpu_csvs)
    lines += ["", "| run | steps | s/step (median, from step 2) | wall time (min, all attempts) | "
              "peak GPU memory (GiB, allocator) | peak GPU memory (MiB, nvidia-smi) |", "|---|---|---|---|---|---|"]
    for info in runs:
        t = times.get(info.name, {"seconds": 0.0, "pids": []})
        smi = max((peaks.get(p, 0.0) for p in t["pids"]), default=0.0)
        steps, per_step, alloc = step_stats(info.run_dir)
        lines.append(f"| {info.name} | {steps} | {'-' if per_step is None else f'{per_step:.2f}'} | "
                     f"{t['seconds'] / 60:.1f} | {'-' if alloc is None else f'{alloc:.1f}'} | "
                     f"{f'{smi:.0f}' if smi else '-'} |")
    from retrain.campaign.plots import plot_campaign

    pngs = [plot_finals(summary, metrics, base, out)] if metrics else []
    several_evals = any(sum(1 for r in rundir.read_metrics(i.run_dir) if "eval/pass@1" in r) > 1 for i in runs)
    for png in plot_campaign(camp, out):
        if png.stem == "eval" and not several_evals:
            png.unlink()  # one point per condition: finals.png shows it with its interval
        else:
            pngs.append(png)
    for png in pngs:
        lines.append(f"\n![{png.stem}]({png.name})")
    text = "\n".join(lines) + "\n"
    (out / "ablation.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="ablation-runs.tar.gz or a campaign folder")
    ap.add_argument("--gpu-mem", type=Path, nargs="*", default=[], help="gpu_mem.csv of each device call")
    ap.add_argument("--base-eval", type=Path, help="the base model's held-out report (retrain eval --out): step 0 "
                    "of runs that skipped their own (eval.at_start = false)")
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    args = ap.parse_args()
    base = json.loads(args.base_eval.read_text())["metrics"] if args.base_eval else None
    with tempfile.TemporaryDirectory() as scratch:
        print(build(campaign_dir(args.source, Path(scratch)), args.out, args.gpu_mem, base))


if __name__ == "__main__":
    main()
