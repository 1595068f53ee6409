"""PNG plots of runs and campaigns (matplotlib, Agg backend; imported inside functions).

One figure per metric family: training reward (``reward/mean``) and held-out eval accuracy
(``eval/pass@1``, else the first ``eval/pass@k`` logged). Per condition, the line is the mean over
seeds at each step and the band is mean ± sample std over the seeds that logged that step
(no band with a single seed).
"""

from __future__ import annotations

import math
from pathlib import Path

from retrain.campaign import rundir
from retrain.campaign.summary import discover

REWARD_KEYS = ("reward/mean",)
EVAL_KEYS = ("eval/pass@1",)


def curves(path: str | Path, metric: str) -> dict[str, dict[int, list[float]]]:
    """condition -> step -> values over seeds."""
    out: dict[str, dict[int, list[float]]] = {}
    for info in discover(path):
        for row in rundir.read_metrics(info.run_dir):
            value = row.get(metric)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out.setdefault(info.condition, {}).setdefault(row["step"], []).append(float(value))
    return out


def _pick(path: str | Path, preferred: tuple[str, ...], prefix: str) -> str | None:
    keys: set[str] = set()
    for info in discover(path):
        for row in rundir.read_metrics(info.run_dir):
            keys.update(row)
    for key in preferred:
        if key in keys:
            return key
    fallback = sorted(k for k in keys if k.startswith(prefix))
    return fallback[0] if fallback else None


def _band(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def plot_metric(path: str | Path, metric: str, out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(path, metric)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for cond, by_step in data.items():
        steps = sorted(by_step)
        stats = [_band(by_step[s]) for s in steps]
        means = [m for m, _ in stats]
        seeds = max(len(v) for v in by_step.values())
        marker = "o" if len(steps) <= 12 else None
        (line,) = ax.plot(steps, means, marker=marker, label=f"{cond} (n={seeds})")
        if seeds > 1:
            ax.fill_between(steps, [m - s for m, s in stats], [m + s for m, s in stats], color=line.get_color(),
                            alpha=0.2, linewidth=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if data:
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_campaign(path: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``reward.png`` and ``eval.png`` (when logged) into ``out_dir`` (default ``<path>/plots``)."""
    path = Path(path)
    out_dir = Path(out_dir) if out_dir else path / "plots"
    written = []
    reward = _pick(path, REWARD_KEYS, "reward/")
    if reward:
        written.append(plot_metric(path, reward, out_dir / "reward.png", f"training {reward} (mean ± std over seeds)"))
    evalk = _pick(path, EVAL_KEYS, "eval/pass@")
    if evalk:
        written.append(plot_metric(path, evalk, out_dir / "eval.png", f"held-out {evalk} (mean ± std over seeds)"))
    return written

