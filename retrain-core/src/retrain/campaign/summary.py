"""Campaign status and summary tables, read from the manifest and the run directories.

``status_rows`` answers "how far is each run" (steps done / total and a state); ``summarize``
gives, per condition, the final and the best value of each metric over seeds: mean, sample
standard deviation (n - 1) and the 95% Student-t interval of the mean; and, per condition, the
difference of its final values against a baseline condition's, paired by seed, with its own
t-interval. "Final" is the metric's last logged value in the run; "best" is its maximum over the
run (every summarised metric is higher-is-better: rewards and eval accuracies).
A folder without a manifest works too: every sub-folder holding a ``metrics.jsonl`` is a run and
its condition is its name without the ``-s<seed>`` suffix.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.campaign import rundir
from retrain.campaign.stats import estimate
from retrain.errors import RetrainError, did_you_mean

MANIFEST = "manifest.json"
DEFAULT_METRICS = ("reward/mean",)
_SEED_SUFFIX = re.compile(r"^(?P<cond>.+)-s(?P<seed>-?\d+)$")


@dataclass
class RunInfo:
    name: str
    condition: str
    seed: int | None
    run_dir: Path
    max_steps: int | None
    status: str  # manifest status: pending, running, done, failed, interrupted ('' = unknown)
    pid: int | None = None


def discover(path: str | Path) -> list[RunInfo]:
    """Runs of a campaign directory (manifest), of a folder of run dirs, or a single run dir."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        data = json.loads((path / MANIFEST).read_text())
        return [RunInfo(name, r["condition"], r.get("seed"), _located(path, name, Path(r["run_dir"])),
                        r.get("max_steps"), r.get("status", ""), r.get("pid")) for name, r in data["runs"].items()]
    if (path / rundir.METRICS).is_file():
        return [_from_dir(path)]
    found = sorted({p.parent for pattern in ("*/metrics.jsonl", "runs/*/metrics.jsonl") for p in path.glob(pattern)})
    if not found:
        raise RetrainError(f"{path}: no campaign manifest, metrics.jsonl or run directories found. "
                           "Point at a campaign directory (with manifest.json) or a run directory.")
    return [_from_dir(p) for p in found]


def _located(campaign: Path, name: str, recorded: Path) -> Path:
    """The run's folder: where the manifest says, or ``runs/NAME`` beside it when the campaign folder
    was moved or copied (from the GPU machine to a laptop) and the recorded absolute path is gone."""
    moved = campaign / "runs" / name
    return moved if not recorded.exists() and moved.is_dir() else recorded


def _from_dir(run_dir: Path) -> RunInfo:
    m = _SEED_SUFFIX.match(run_dir.name)
    cond, seed = (m["cond"], int(m["seed"])) if m else (run_dir.name, None)
    return RunInfo(run_dir.name, cond, seed, run_dir, _max_steps(run_dir), "")


def _max_steps(run_dir: Path) -> int | None:
    for name in ("config.json", "resolved_config.json"):
        p = run_dir / name
        if p.is_file():
            try:
                return int(json.loads(p.read_text())["training"]["max_steps"])
            except (KeyError, ValueError, TypeError):
                pass
    for name in ("config.toml", "resolved_config.toml", "retrain.toml"):
        p = run_dir / name
        if p.is_file():
            import tomllib

            try:
                return int(tomllib.loads(p.read_text())["training"]["max_steps"])
            except (KeyError, ValueError, TypeError, tomllib.TOMLDecodeError):
                pass
    return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def run_state(info: RunInfo) -> tuple[int, str]:
    """(training steps done, state): done, running, failed, interrupted, partial or pending."""
    steps = rundir.training_steps(rundir.read_metrics(info.run_dir))
    if info.max_steps is not None and rundir.is_finished(info.run_dir, info.max_steps):
        return steps, "done"
    if info.status == "running":
        return steps, "running" if _alive(info.pid) else "interrupted"
    if info.status in ("done", "failed", "interrupted"):
        return steps, info.status
    return steps, "partial" if steps or info.run_dir.exists() else "pending"


def status_rows(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for info in discover(path):
        steps, state = run_state(info)
        rows.append({"run": info.name, "condition": info.condition, "seed": info.seed, "steps": steps,
                     "max_steps": info.max_steps, "state": state, "run_dir": str(info.run_dir)})
    return rows


def format_status(rows: list[dict[str, Any]]) -> str:
    table = [["condition", "seed", "steps", "state"]]
    for r in rows:
        total = r["max_steps"] if r["max_steps"] is not None else "?"
        table.append([r["condition"], "" if r["seed"] is None else str(r["seed"]), f"{r['steps']}/{total}", r["state"]])
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return _table(table) + "\n" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def summarize(path: str | Path, metrics: list[str] | None = None, baseline: str | None = None) -> dict[str, Any]:
    """Per condition and metric: final and best values over seeds (mean, std, 95% t-interval), and
    the paired-by-seed difference of each condition's final values against ``baseline``.

    Default metrics: ``reward/mean`` and every ``eval/pass@k`` that was logged. Default baseline:
    the first condition."""
    runs = discover(path)
    rows_by_run = {info.name: rundir.read_metrics(info.run_dir) for info in runs}
    if metrics is None:
        present = {k for rows in rows_by_run.values() for row in rows for k in row}
        metrics = [m for m in DEFAULT_METRICS if m in present] + sorted(k for k in present if k.startswith("eval/pass@"))
    conditions = list(dict.fromkeys(info.condition for info in runs))
    if baseline is None:
        baseline = conditions[0] if conditions else None
    elif baseline not in conditions:
        raise RetrainError(f"{path}: --baseline {baseline}: no such condition (conditions: {', '.join(conditions)})."
                           + did_you_mean(baseline, conditions))
    out: dict[str, Any] = {"metrics": metrics, "baseline": baseline, "interval": INTERVAL, "conditions": {}, "paired": {}}
    finals_by_seed: dict[str, dict[str, dict[int, float]]] = {}  # condition -> metric -> seed -> final value
    for cond in conditions:
        entry: dict[str, Any] = {}
        for metric in metrics:
            seeds, finals, bests = [], [], []
            for info in (i for i in runs if i.condition == cond):
                values = [row[metric] for row in rows_by_run[info.name]
                          if isinstance(row.get(metric), (int, float)) and not isinstance(row.get(metric), bool)]
                if values:
                    seeds.append(info.seed)
                    finals.append(float(values[-1]))
                    bests.append(float(max(values)))
            if finals:
                final, best = estimate(finals), estimate(bests)
                entry[metric] = {"final_mean": final.mean, "final_std": final.std, "final_ci95": _pair(final.ci95),
                                 "best_mean": best.mean, "best_std": best.std, "best_ci95": _pair(best.ci95),
                                 "n": len(finals), "seeds": seeds, "finals": finals}
                finals_by_seed.setdefault(cond, {})[metric] = {s: v for s, v in zip(seeds, finals, strict=True)
                                                               if s is not None}
        out["conditions"][cond] = entry
    for cond in conditions:
        if cond == baseline:
            continue
        paired: dict[str, Any] = {}
        for metric in metrics:
            base = finals_by_seed.get(baseline, {}).get(metric, {})
            mine = finals_by_seed.get(cond, {}).get(metric, {})
            seeds = [s for s in mine if s in base]
            if not seeds:
                continue
            diffs = [mine[s] - base[s] for s in seeds]
            d = estimate(diffs)
            paired[metric] = {"n": d.n, "seeds": seeds, "differences": diffs, "mean": d.mean, "std": d.std,
                              "ci95": _pair(d.ci95), "includes_zero": d.includes_zero}
        out["paired"][cond] = paired
    return out


INTERVAL = "95% Student-t interval of the mean over seeds: mean ± t(0.975, n-1) * std / sqrt(n)"


def _pair(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [ci[0], ci[1]]


def _ci(ci: list[float] | None, digits: int = 4) -> str:
    return "[n<2]" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    head = ["condition", "n"]
    for m in summary["metrics"]:
        head += [f"{m} final", "95% CI", f"{m} best"]
    rows = [head]
    for cond, entry in summary["conditions"].items():
        row = [cond, str(max((v["n"] for v in entry.values()), default=0))]
        for m in summary["metrics"]:
            v = entry.get(m)
            row += ([f"{v['final_mean']:.4f} ± {v['final_std']:.4f}", _ci(v["final_ci95"]),
                     f"{v['best_mean']:.4f} ± {v['best_std']:.4f}"] if v else ["-", "-", "-"])
        rows.append(row)
    return rows


def _paired_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = [["condition", "metric", "n", "mean difference", "95% CI", ""]]
    for cond, entry in summary["paired"].items():
        for m in summary["metrics"]:
            d = entry.get(m)
            if d:
                rows.append([cond, m, str(d["n"]), f"{d['mean']:+.4f} ± {d['std']:.4f}", _ci(d["ci95"]),
                             "includes 0" if d["includes_zero"] else ""])
    return rows


def format_summary(summary: dict[str, Any]) -> str:
    if not summary["metrics"]:
        return "no metrics logged yet"
    text = _table(_summary_rows(summary)) + "\n(mean ± sample std over seeds; 95% CI: Student-t interval of the mean)"
    paired = _paired_rows(summary)
    if len(paired) > 1:
        text += (f"\n\nfinal value minus {summary['baseline']}'s, paired by seed:\n" + _table(paired)
                 + "\n(includes 0: not distinguishable from the baseline at 95%)")
    return text


def _markdown(rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])] + ["| " + " | ".join(r) + " |" for r in rows[1:]]


def write_summary(path: str | Path, baseline: str | None = None) -> str:
    """Write ``summary.json`` and ``summary.md`` into the campaign directory; return the table."""
    path = Path(path)
    summary = summarize(path, baseline=baseline)
    (path / "summary.json").write_text(json.dumps(summary, indent=2))
    md = "# Campaign summary\n\n" + "\n".join(_markdown(_summary_rows(summary)))
    md += "\n\nmean ± sample std over seeds; 95% CI: Student-t interval of the mean over seeds\n"
    paired = _paired_rows(summary)
    if len(paired) > 1:
        md += (f"\n## Paired by seed against {summary['baseline']}\n\n" + "\n".join(_markdown(paired))
               + "\n\nfinal value minus the baseline's final value of the same seed; "
               "'includes 0': not distinguishable from the baseline at 95%\n")
    (path / "summary.md").write_text(md)
    return format_summary(summary)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
