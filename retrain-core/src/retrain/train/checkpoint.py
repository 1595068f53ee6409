"""Checkpoints (docs/training.md, "Checkpoints and resume"): written atomically, the last K kept, everything needed to resume.

Layout of ``<run>/checkpoints/step_<N>/``::

    backend/            the backend's own files (adapter or weights + optimizer + scheduler + version)
    state.pt            step, policy version, RNG (python, numpy, torch, cuda), data cursor
                        (environment.state_dict()), credit controller state (credit.state_dict())
    meta.json           step, version, time (human-readable)

A checkpoint is written to ``.tmp-step_<N>`` and renamed into place, so a crash mid-write never
leaves a half checkpoint that ``--resume latest`` would pick. A full disk (or any OS error while
writing) is one line naming the folder and the free space; the half-written ``.tmp-step_<N>`` is
removed and the previous checkpoint is kept.

Checkpoints are data, never code: every ``.pt`` file is read with :func:`load_data`
(``torch.load(weights_only=True)``: tensors, numbers, strings, lists, dicts), so a crafted
checkpoint cannot run anything on ``--resume`` or ``retrain eval --checkpoint``.
"""

from __future__ import annotations

import errno
import json
import random
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from retrain.errors import RetrainError
from retrain.train.files import disk_nearly_full, write_failed

PREFIX = "step_"


class UnsafeCheckpointError(RetrainError):
    """A checkpoint file holds Python objects other than plain data (it could run code if unpickled)."""


def load_data(path: Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` restricted to data (tensors, numbers, strings, containers): never runs code.

    numpy arrays (the numpy RNG state of checkpoints written before this rule) are allowed as
    data. Anything else (a class, a function such as ``os.system``) is refused with one line.
    """
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(_numpy_data_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))  # torch names the refused callable or class
        what = f"a reference to {found.group(1)}" if found else "Python objects"
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the file holds {what}, not plain data, and loading it could run code. "
            "retrain loads checkpoints as data only; use a checkpoint written by retrain, or one you trust "
            "re-saved with tensors and plain values.") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise RetrainError(f"{path}: unreadable checkpoint file ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:160] if str(e) else 'empty'}). Resume from an earlier "
                           "checkpoint (checkpoints/step_N) or start afresh.") from None


def _numpy_data_globals() -> list[Any]:
    """numpy's array reconstruction, which builds arrays from bytes and a dtype (no code)."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    name, keys, pos, has_gauss, gauss = np.random.get_state()  # keys: uint32 array, stored as a tensor
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                    gauss), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(_as_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((name, keys.astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """random.setstate wants tuples all the way down (a checkpoint may hold lists)."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


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
    final = folder / f"{PREFIX}{step}"
    tmp = folder / f".tmp-{PREFIX}{step}"
    with writing_checkpoint(run_dir, step, tmp):
        folder.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        backend.save_checkpoint(tmp / "backend")
        state = {"step": step, "version": getattr(backend, "version", step), "rng": rng_state(),
                 "environment": _state_of(environment), "credit": _state_of(credit), "extra": extra or {}}
        torch.save(state, tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps({"step": step, "version": state["version"],
                                                   "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        publish(tmp, final)
    prune(run_dir, keep)
    return final


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the last ``keep`` checkpoints; each is renamed away first, so a kill mid-delete
    leaves a ``.del-step_N`` folder (removed at the next start), never a half checkpoint."""
    for old in list_checkpoints(run_dir)[:-max(1, keep)]:
        doomed = old.with_name(f".del-{old.name}")
        old.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def publish(tmp: Path, final: Path) -> None:
    """Rename the finished ``.tmp-step_N`` into place (re-saving a step replaces it)."""
    if final.exists():  # re-saving the same step (e.g. SIGINT right after a scheduled save)
        old = final.with_name(f".old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)  # never a moment without a complete step_N or its .old copy
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)


@contextmanager
def writing_checkpoint(run_dir: Path, step: int, tmp: Path) -> Iterator[None]:
    """A failed write (an OSError, torch/safetensors reporting one, or any error once the disk is
    nearly full): remove the partial folder, raise one line naming the disk, keep the rest."""
    try:
        yield
    except BaseException as e:  # torch.distributed.checkpoint's CheckpointException is a BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        full = disk_nearly_full(tmp)
        if not (isinstance(e, OSError) or full or _is_write_error(e)):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        previous = list_checkpoints(run_dir)
        kept = (f"The previous checkpoint {previous[-1]} is intact." if previous
                else "No earlier checkpoint exists.")
        if not isinstance(e, OSError):  # torch/safetensors report a failed write in their own words
            e = OSError(errno.ENOSPC if full else errno.EIO, str(e).strip().splitlines()[-1][:200])
        raise write_failed(tmp.with_name(f"{PREFIX}{step}"), e, "checkpoint", kept) from None


def _is_write_error(e: Exception) -> bool:
    """A failed write reported as something else than OSError: torch.save's RuntimeError
    (``PytorchStreamWriter failed writing file``), safetensors' SafetensorError (``StorageFull``)."""
    text = str(e).lower()
    return any(s in text for s in ("failed writing", "no space left", "file write failed", "storagefull",
                                   "os error 28", "quota exceeded"))


def load_checkpoint(path: Path, *, backend: Any, environment: Any, credit: Any) -> dict[str, Any]:
    """Restore everything saved by :func:`save_checkpoint`; returns the state (``step``, ``extra``)."""
    import torch

    path = Path(path)
    if not (path / "state.pt").is_file():
        raise RetrainError(f"{path}: not a retrain checkpoint (no state.pt). Pass a checkpoints/step_N folder, "
                           "a run directory, or 'latest'.")
    state = load_data(path / "state.pt")
    backend.load_checkpoint(path / "backend")
    _load_into(environment, state.get("environment"))
    _load_into(credit, state.get("credit"))
    set_rng_state(state["rng"])
    return state
