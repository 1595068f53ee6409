"""The line a run ends with: held-out accuracy before -> after, read from its eval reports.

``retrain.evaluation`` writes ``<run dir>/eval/step_<N>.json`` at every evaluation; the first and
the last report of a run (step 0 and the final step) give::

    held-out accuracy: 3.1% -> 27.0% (+23.9 points; 64 problems, greedy pass@1, step 0 -> 20)

Both reports must have scored the same problems with the same prompt (the prompt fingerprint in
each report); when they differ the line says so instead of comparing them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _reports(run_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for path in (Path(run_dir) / "eval").glob("step_*.json"):
        try:
            out.append((int(path.stem.split("_", 1)[1]), json.loads(path.read_text())))
        except (ValueError, json.JSONDecodeError, OSError):
            continue  # not a report of ours (or a partial one: reports are written atomically)
    return sorted(out, key=lambda x: x[0])


def accuracy_line(run_dir: Path) -> str | None:
    """The before -> after line, or None when the run has fewer than two evaluations."""
    reports = _reports(run_dir)
    if len(reports) < 2:
        return None
    (s0, first), (s1, last) = reports[0], reports[-1]
    ids0 = [p.get("id") for p in first.get("problems", [])]
    ids1 = [p.get("id") for p in last.get("problems", [])]
    fp0 = (first.get("prompt") or {}).get("fingerprint")
    fp1 = (last.get("prompt") or {}).get("fingerprint")
    if ids0 != ids1 or fp0 != fp1:
        return (f"held-out accuracy: step {s0} and step {s1} evaluated different problems or prompts; "
                f"see {Path(run_dir) / 'eval'}")
    a0, a1 = first["metrics"]["eval/pass@1"], last["metrics"]["eval/pass@1"]
    return (f"held-out accuracy: {a0:.1%} -> {a1:.1%} ({(a1 - a0) * 100:+.1f} points; {len(ids0)} problems, "
            f"greedy pass@1, step {s0} -> {s1})")
