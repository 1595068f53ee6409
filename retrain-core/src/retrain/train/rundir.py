"""The run directory (docs/training.md, "Run directory")::

    runs/<name>/
      config.toml        the fully resolved config (secrets redacted)
      plugins.json       every plugin the registry loaded (name, package, version, components)
      metrics.jsonl      one row per optimizer step ({"step": N, "reward/mean": ...}); row 0 = start eval
      samples.jsonl      a few completions per step (prompt, completion, reward, reference)
      checkpoints/step_N/
      wandb_id.txt       the wandb run id (a resumed run continues the same wandb run)

Resuming is idempotent: rows beyond the checkpoint's step are dropped from the jsonl files before
training continues, so no step is ever logged twice. That rewrite is an atomic replace (a kill
during it leaves the old file); a torn last line (kill -9 or a full disk mid-write) is skipped by
every reader and dropped on resume. ``.tmp-step_N`` folders a kill left behind are removed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.errors import RetrainError
from retrain.train import files
from retrain.train.checkpoint import PREFIX, list_checkpoints
from retrain.train.files import atomic_write_text, ends_torn, read_jsonl, write_failed

if TYPE_CHECKING:
    from retrain.config import Config
    from retrain.plugins import Registry

METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"


def run_name(cfg: Config, config_path: Path | None) -> str:
    """``[logging] run_name``, else the config file's stem; always one folder name inside ``log_dir``
    (the config validator refuses a run_name that is a path: values.FolderName)."""
    if cfg.logging.run_name:
        return cfg.logging.run_name
    return Path(config_path).stem if config_path else "run"


def _siblings(parent: Path, name: str) -> list[Path]:
    """``name`` and ``name-2``, ``name-3``, ... that exist."""
    out = [parent / name] if (parent / name).is_dir() else []
    if parent.is_dir():
        out += [p for p in parent.iterdir() if p.is_dir() and p.name.startswith(name + "-")
                and p.name[len(name) + 1:].isdigit()]
    return out


def _is_used(path: Path) -> bool:
    return (path / METRICS).is_file() or (path / "checkpoints").is_dir()


def resolve_run(cfg: Config, config_path: Path | None, resume: str | None) -> tuple[Path, Path | None]:
    """(run directory, checkpoint to resume from or None).

    A fresh run never overwrites: if ``runs/<name>`` holds a previous run, it gets ``<name>-2``,
    ``<name>-3``, ... ``resume="latest"``: the newest checkpoint among ``<name>``, ``<name>-N``.
    ``resume=PATH``: a ``checkpoints/step_N`` folder or a run directory (its latest checkpoint).
    """
    parent = Path(cfg.logging.log_dir)
    name = run_name(cfg, config_path)
    resume = resume or cfg.resume.from_ or None
    if resume == "latest":
        candidates = [(c, run) for run in _siblings(parent, name) for c in list_checkpoints(run)]
        if not candidates:
            raise RetrainError(f"--resume latest: no checkpoint under {parent / name}[-N]/checkpoints. "
                               "Start without --resume, or pass a checkpoint path.")
        ckpt, run = max(candidates, key=lambda cr: (cr[0] / "state.pt").stat().st_mtime)
        return run, ckpt
    if resume:
        path = Path(resume)
        if (path / "state.pt").is_file():
            return path.parent.parent, path
        if path.is_dir() and list_checkpoints(path):
            return path, list_checkpoints(path)[-1]
        raise RetrainError(f"--resume {resume}: not a checkpoint (checkpoints/step_N with state.pt) nor a run "
                           "directory with checkpoints. Use --resume latest or a path printed by a previous run.")
    run = parent / name
    k = 2
    while run.exists() and _is_used(run):
        run = parent / f"{name}-{k}"
        k += 1
    return run, None


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop rows whose ``step`` is beyond ``max_step`` (and any torn line), by an atomic replace:
    a kill during the rewrite leaves the old file, never an empty one."""
    if not path.is_file():
        return
    rows = read_jsonl(path)
    keep = [row for row in rows if _step_of(row) <= max_step]
    if len(keep) == len(rows) and not ends_torn(path) and path.stat().st_size:
        return  # nothing to drop: leave the file alone
    try:
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in keep))
    except OSError as e:
        raise write_failed(path, e, "rows to", "Nothing was lost: the file is unchanged.") from None


def _step_of(row: dict[str, Any]) -> int:
    try:
        return int(row.get("step", 0))
    except (TypeError, ValueError):
        return 0


def remove_partial_checkpoints(run_dir: Path) -> None:
    """Delete ``checkpoints/.tmp-step_N`` folders a kill or a full disk left mid-write (and
    ``.del-step_N`` ones left mid-delete); put back a
    ``.old-step_N`` (a step being re-saved when the kill came) whose replacement never arrived."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return
    for old in folder.glob(f".old-{PREFIX}*"):
        final = folder / old.name[len(".old-"):]
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(final)
    for leftover in [*folder.glob(f".tmp-{PREFIX}*"), *folder.glob(f".del-{PREFIX}*")]:
        shutil.rmtree(leftover, ignore_errors=True)


def prepare(run_dir: Path, cfg: Config, registry: Registry | None, step: int) -> None:
    """Create the run directory; write config.toml and plugins.json; drop rows beyond ``step``."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.toml", cfg.to_toml())
        if registry is not None:
            infos = [p.to_json() for p in registry.plugins.values()]
            atomic_write_text(run_dir / "plugins.json", json.dumps(infos, indent=2) + "\n")
    except OSError as e:
        raise write_failed(run_dir, e, "the run directory") from None
    remove_partial_checkpoints(run_dir)
    truncate_jsonl(run_dir / METRICS, step)
    truncate_jsonl(run_dir / SAMPLES, step)


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    files.append_jsonl(path, rows)
