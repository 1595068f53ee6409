"""Checkpoints of sharded runs with ``torch.distributed.checkpoint`` (DCP): resume on any number of ranks.

Layout of ``checkpoints/step_N/`` (the same folder as a one-process checkpoint, see
``retrain.train.checkpoint``; only ``backend/`` differs)::

    backend/dcp/               DCP files: every rank writes its shards of the trainable weights
                               (LoRA: the adapter; full fine-tuning: all weights) and of the
                               optimizer state, keyed by parameter name (FQN)
    backend/trainer_state.pt   scheduler state, policy version, "format": "dcp" (rank 0)
    state.pt, meta.json        rank 0: step, RNG, data cursor, credit state (identical on all ranks)

DCP re-shards on load, so a checkpoint written by 2 ranks resumes on 1, 2 or 4 ranks, and also in
an ordinary one-process run (DCP loads without a process group). A one-process checkpoint
(adapter/model safetensors + optimizer state) resumes in a sharded run too: its full tensors are
distributed to the shards. The folder is written to ``.tmp-step_N`` and renamed by rank 0 once
every rank has finished, as in the one-process case.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.errors import RetrainError

if TYPE_CHECKING:
    from retrain.distributed.world import World

DCP_DIR = "dcp"
TRAINER_STATE = "trainer_state.pt"


def is_dcp(path: Path) -> bool:
    """True when ``path`` (a checkpoint's ``backend/`` folder) holds a DCP checkpoint."""
    return (Path(path) / DCP_DIR).is_dir()


def _options(backend: Any, **kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # LoRA: the frozen base weights come from the model folder, not the checkpoint
    return StateDictOptions(ignore_frozen_params=bool(backend.lora), strict=not backend.lora, **kw)


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def save_backend(backend: Any, path: Path) -> None:
    """Every rank: its shards into ``path/dcp``; rank 0: scheduler + version (collective)."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    msd, osd = get_state_dict(backend.model, backend.optimizer, options=_options(backend))
    dcp.save({"model": msd, "optimizer": osd}, checkpoint_id=str(path / DCP_DIR))
    if not _distributed() or backend.dist is None or backend.dist.world.is_main:
        torch.save({"scheduler": backend.scheduler.state_dict(), "version": backend.version, "format": "dcp",
                    "lora": bool(backend.lora)}, path / TRAINER_STATE)


def load_backend(backend: Any, path: Path) -> None:
    """Restore a DCP checkpoint (any world size, or none), or a one-process checkpoint into a sharded model."""
    from retrain.train.checkpoint import load_data

    path = Path(path)
    if not (path / TRAINER_STATE).is_file():
        raise RetrainError(f"{path}: no {TRAINER_STATE}; not a retrain checkpoint's backend folder.")
    st = load_data(path / TRAINER_STATE)  # data only, never code
    if st.get("lora", bool(backend.lora)) != bool(backend.lora):
        raise RetrainError(f"{path}: saved with lora_rank {'> 0' if st.get('lora') else '= 0'}, this run has "
                           f"[model] lora_rank = {backend.cfg.model.lora_rank}; resume with the same setting.")
    if is_dcp(path):
        check_dcp_metadata(path / DCP_DIR)
        _load_dcp(backend, path / DCP_DIR)
    else:
        _load_full(backend, path, st)
    backend.scheduler.load_state_dict(st["scheduler"])
    backend.version = int(st["version"])
    if backend.dist is not None:
        backend.dist.refresh_replica()


#: What a DCP ``.metadata`` pickle may reference: DCP's own metadata classes and plain torch values.
_DCP_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem")
_DCP_GLOBALS = {("torch", "Size"), ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"),
                ("pathlib", "WindowsPath"), ("pathlib", "PurePosixPath"), ("collections", "OrderedDict")}


def check_dcp_metadata(folder: Path) -> None:
    """Refuse a DCP ``.metadata`` that references anything but DCP metadata and torch values.

    ``torch.distributed.checkpoint`` reads that file with an unrestricted ``pickle.load``; reading
    it first through a restricted unpickler keeps checkpoints data-only (see retrain.train.checkpoint).
    """
    import pickle

    from retrain.train.checkpoint import UnsafeCheckpointError

    class DataOnly(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in _DCP_GLOBALS or _is_dcp_data_class(module, name) or _is_torch_dtype(module, name):
                return super().find_class(module, name)
            raise UnsafeCheckpointError(
                f"{folder / '.metadata'}: refused to load: the file holds a reference to {module}.{name}, not "
                "plain data, and loading it could run code. retrain loads checkpoints as data only; use a "
                "checkpoint written by retrain, or one you trust.")

    meta = folder / ".metadata"
    try:
        with meta.open("rb") as f:
            DataOnly(f).load()
    except UnsafeCheckpointError:
        raise
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError, TypeError) as e:
        raise RetrainError(f"{meta}: unreadable checkpoint file ({type(e).__name__}: {str(e)[:120]}). Resume from "
                           "an earlier checkpoint (checkpoints/step_N) or start afresh.") from None


def _is_dcp_data_class(module: str, name: str) -> bool:
    """A dataclass or enum defined in DCP's metadata modules (built from fields, no code runs)."""
    import enum
    import importlib

    if module not in _DCP_MODULES:
        return False
    obj = getattr(importlib.import_module(module), name, None)
    return isinstance(obj, type) and obj.__module__ == module and (
        hasattr(obj, "__dataclass_fields__") or issubclass(obj, enum.Enum))


def _is_torch_dtype(module: str, name: str) -> bool:
    import torch

    return module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)


def _load_dcp(backend: Any, folder: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    opts = _options(backend)
    msd, osd = get_state_dict(backend.model, backend.optimizer, options=opts)
    state = {"model": msd, "optimizer": osd}
    dcp.load(state, checkpoint_id=str(folder), no_dist=not _distributed())
    set_state_dict(backend.model, backend.optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optimizer"], options=opts)


def _load_full(backend: Any, path: Path, st: dict[str, Any]) -> None:
    """A one-process checkpoint (safetensors + index-keyed optimizer state) into the sharded model."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    replica = backend.dist.replica  # plain module with the same names: load there, then distribute
    if backend.lora:
        from peft import set_peft_model_state_dict

        f = path / "adapter" / "adapter_model.safetensors"
        if not f.is_file():
            raise RetrainError(f"{path}: no LoRA adapter in this checkpoint (was it saved with lora_rank = 0?).")
        set_peft_model_state_dict(replica, load_file(str(f), device=str(backend.device)))
    else:
        state: dict[str, Any] = {}
        for f in sorted((path / "model").glob("*.safetensors")):
            state.update(load_file(str(f), device=str(backend.device)))
        if not state:
            raise RetrainError(f"{path}: no model weights in this checkpoint (was it saved with LoRA?).")
        replica.load_state_dict(state, strict=False)
    names = [n for n, _ in backend.dist.trainable]
    full = {n: p.detach() for n, p in replica.named_parameters() if n in set(names)}
    opts = _options(backend, full_state_dict=True)
    set_model_state_dict(backend.model, full, options=opts)
    plain = st["optimizer"]  # {"state": {index: {...}}, "param_groups": [{"params": [index, ...]}]}
    osd = {"state": {names[i]: v for i, v in plain["state"].items()},
           "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in plain["param_groups"]]}
    set_optimizer_state_dict(backend.model, backend.optimizer, osd, options=opts)


def save_run_checkpoint(world: World, run_dir: Path, step: int, *, backend: Any, environment: Any, credit: Any,
                        keep: int = 2) -> Path:
    """``checkpoints/step_<step>`` of a sharded run; every rank calls it (see the module doc)."""
    import torch

    from retrain.train.checkpoint import PREFIX, _state_of, prune, publish, rng_state, writing_checkpoint
    from retrain.train.files import WriteError

    folder = Path(run_dir) / "checkpoints"
    final, tmp = folder / f"{PREFIX}{step}", folder / f".tmp-{PREFIX}{step}"
    if world.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    world.barrier()
    failed = ""  # a failed write (disk full) becomes the same one line on every rank, so none waits forever
    try:
        with writing_checkpoint(run_dir, step, tmp):  # every rank: its shards
            backend.save_checkpoint(tmp / "backend")
    except WriteError as e:
        failed = str(e)
    failed = next((f for f in world.all_gather_object(failed) if f), "")
    if world.is_main and not failed:
        state = {"step": step, "version": backend.version, "rng": rng_state(), "environment": _state_of(environment),
                 "credit": _state_of(credit), "extra": {"world_size": world.size}}
        try:
            with writing_checkpoint(run_dir, step, tmp):  # rank 0: the run state, then the rename
                torch.save(state, tmp / "state.pt")
                (tmp / "meta.json").write_text(json.dumps({"step": step, "version": backend.version,
                                                           "world_size": world.size,
                                                           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
                publish(tmp, final)
            prune(run_dir, keep)
        except WriteError as e:
            failed = str(e)
    failed = world.broadcast_object(failed)
    if failed:
        raise WriteError(failed)
    world.barrier()
    return final
