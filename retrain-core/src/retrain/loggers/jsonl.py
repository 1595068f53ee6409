"""``jsonl`` logger: <run>/metrics.jsonl, one row per step, flushed at once (a crash loses nothing)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from retrain.train.files import ends_torn, write_failed


def jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None if math.isnan(v) else (1e308 if v > 0 else -1e308)
        out[k] = v
    return out


class JsonlLogger:
    """One JSON row per optimizer step in <run>/metrics.jsonl."""

    def __init__(self, ctx: Any = None, path: str | Path | None = None) -> None:
        if path is None:
            run_dir = getattr(ctx, "run_dir", None)
            if run_dir is None:
                raise RuntimeError("jsonl logger: no run directory in the run context")
            path = Path(run_dir) / "metrics.jsonl"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = ends_torn(self.path)
        self._f = self.path.open("a")
        if torn:  # a kill mid-row left a partial line: the next row starts on its own line
            self._f.write("\n")

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        try:
            self._f.write(json.dumps({"step": step, **jsonable(metrics)}) + "\n")
            self._f.flush()
        except OSError as e:
            raise write_failed(self.path, e, f"step {step}'s metrics to") from None

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:  # the disk filled up: the error was already reported by log()
            pass
