"""Reading run directories: metrics.jsonl, checkpoints, adapters and how far a run got.

A run directory (docs/training.md, "Run directory") holds ``metrics.jsonl`` (one JSON object per line with
``step`` and slash-namespaced metrics such as ``reward/mean`` and ``eval/pass@1``),
``checkpoints/step_N/`` and the resolved config. Rows with the same step are merged (an eval row
and a training row of one step become one), later rows win, so a resumed run that re-logs a step
never counts it twice. A torn last line (a run killed mid-write) is ignored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

METRICS = "metrics.jsonl"
#: Files a finished run may leave (the training loop's marker, or the campaign's own).
DONE_MARKERS = ("done.json", "DONE", "finished.json")
_STEP_DIR = re.compile(r"^step_(\d+)$")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of the run's ``metrics.jsonl`` merged by step, sorted by step (empty when there is no file)."""
    return read_metrics_file(Path(run_dir) / METRICS)


def read_metrics_file(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics file (any name) merged by step, sorted by step; torn lines are skipped."""
    if not path.is_file():
        return []
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn line from a killed run
        if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
            continue
        step = int(row["step"])
        by_step.setdefault(step, {"step": step}).update(row)
    return [by_step[s] for s in sorted(by_step)]


def training_steps(rows: list[dict[str, Any]]) -> int:
    """The last step that has a training metric (any key outside ``eval/``, ``step``, ``time``)."""
    last = 0
    for row in rows:
        if any(not k.startswith("eval/") and k not in ("step", "time", "timestamp") for k in row):
            last = max(last, row["step"])
    return last


def checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of complete ``checkpoints/step_N`` folders (with ``state.pt``), oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / "state.pt").is_file():  # complete checkpoints only
            out.append((int(m.group(1)), p))
    return sorted(out)


def find_adapter(run_dir: str | Path) -> Path | None:
    """The newest peft adapter folder in a run (final adapter, else the latest checkpoint's)."""
    run_dir = Path(run_dir)
    found = [p.parent for p in run_dir.rglob("adapter_config.json") if ".tmp" not in str(p)]
    if not found:
        return None

    def key(p: Path) -> tuple[int, int, float]:
        m = next((_STEP_DIR.match(part) for part in p.relative_to(run_dir).parts if _STEP_DIR.match(part)), None)
        # an adapter outside checkpoints/ (the final one) sorts last
        return (0 if m else 1, int(m.group(1)) if m else 0, p.stat().st_mtime)

    return max(found, key=key)


def has_done_marker(run_dir: str | Path) -> bool:
    return any((Path(run_dir) / name).exists() for name in DONE_MARKERS)


def is_finished(run_dir: str | Path, max_steps: int) -> bool:
    """A run is finished when it left a done marker or logged training step ``max_steps``."""
    if has_done_marker(run_dir):
        return True
    return training_steps(read_metrics(run_dir)) >= max_steps
