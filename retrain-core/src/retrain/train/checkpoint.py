"""Checkpoints (docs/training.md, "Checkpoints and resume"): written atomically, the last K kept, everything needed to resume.

Layout of ``<run>/checkpoints/step_<N>/``::

    backend/            the backend's own files (adapter or weights + optimizer + scheduler + version)
    state.pt            step, policy version, RNG (python, numpy, torch, cuda), data cursor
                        (environment.state_dict()), credit controller state (credit.state_dict())
    meta.json           step, version, time (human-readable)

A checkpoint is written to ``.tmp-step_<N>`` and renamed into place, so a crash mid-write never
leaves a half checkpoint that ``--resume latest`` would pick.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

from retrain.errors import RetrainError

PREFIX = "step_"


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _state_of(component: Any) -> Any:
    fn = getattr(component, "state_dict", None)
    return fn() if callable(fn) else None


def _load_into(component: Any, state: Any) -> None:
    fn = getattr(component, "load_state_dict", None)
    if state is not None and callable(fn):
        fn(state)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
             and p.name[len(PREFIX):].isdigit() and (p / "state.pt").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def save_checkpoint(run_dir: Path, step: int, *, backend: Any, environment: Any, credit: Any,
                    extra: dict[str, Any] | None = None, keep: int = 2) -> Path:
    """Write ``checkpoints/step_<step>`` atomically; delete all but the last ``keep``."""
    import torch

    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step}"
    tmp = folder / f".tmp-{PREFIX}{step}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    backend.save_checkpoint(tmp / "backend")
    state = {"step": step, "version": getattr(backend, "version", step), "rng": rng_state(),
             "environment": _state_of(environment), "credit": _state_of(credit), "extra": extra or {}}
    torch.save(state, tmp / "state.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step, "version": state["version"],
                                               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
    if final.exists():  # re-saving the same step (e.g. SIGINT right after a scheduled save)
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, *, backend: Any, environment: Any, credit: Any) -> dict[str, Any]:
    """Restore everything saved by :func:`save_checkpoint`; returns the state (``step``, ``extra``)."""
    import torch

    path = Path(path)
    if not (path / "state.pt").is_file():
        raise RetrainError(f"{path}: not a retrain checkpoint (no state.pt). Pass a checkpoints/step_N folder, "
                           "a run directory, or 'latest'.")
    state = torch.load(path / "state.pt", weights_only=False)
    backend.load_checkpoint(path / "backend")
    _load_into(environment, state.get("environment"))
    _load_into(credit, state.get("credit"))
    set_rng_state(state["rng"])
    return state
