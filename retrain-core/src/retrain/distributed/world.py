"""The process group of a ``torchrun`` job: who am I, which device, and the few collectives retrain uses.

``torchrun`` (or ``[backend] devices = "gpu:0,1"`` / ``"cpu:2"``, which re-executes the command
under torchrun, see :mod:`retrain.distributed.launch`) sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables; :func:`init_world` turns them into a :class:`World`:
NCCL with one GPU per rank (``cuda:LOCAL_RANK``) when CUDA is present and the devices ask for
GPUs, else gloo on the CPU. Without those variables there is no world (``None``): the run is the
ordinary one-process run and nothing in this package is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from retrain.errors import ConfigError


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun (or any launcher that sets its variables)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank_device(devices: str) -> str | None:
    """The device of this rank under torchrun (``cuda:LOCAL_RANK`` or ``cpu``); None outside torchrun."""
    if not launched_by_torchrun():
        return None
    if devices.startswith("cpu"):
        return "cpu"
    import torch

    if torch.cuda.is_available() and devices != "cpu":
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return "cpu"


@dataclass
class World:
    """This process's place in the job: ``rank`` of ``size`` processes, its ``device``; rank 0 is main."""

    rank: int
    size: int
    local_rank: int
    device: str
    backend: str  # "nccl" | "gloo"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives (every rank must call them in the same order) ----------------------------------
    def all_gather_object(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (pickled; for lists of tokens, texts, small dicts)."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks of a list of floats (fp64, so sums of token counts stay exact)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)  # [K]
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.backend == "nccl":
            dist.barrier(device_ids=[self.local_rank])
        else:
            dist.barrier()

    def close(self, synchronize: bool = False) -> None:
        """Leave the process group. ``synchronize`` (a clean end: every rank is here) waits for the others
        first: a rank that tears gloo down while a peer still reads from it can abort that peer with
        "terminate called without an active exception". After an error a peer may never arrive: no wait."""
        import torch.distributed as dist

        if dist.is_initialized():
            if synchronize:
                self.barrier()
            dist.destroy_process_group()


def init_world(devices: str = "auto") -> World | None:
    """Join the torchrun job (NCCL on GPUs, gloo on CPU); None when not launched by torchrun."""
    if not launched_by_torchrun():
        return None
    import torch
    import torch.distributed as dist

    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ["LOCAL_RANK"])
    device = rank_device(devices) or "cpu"
    if device.startswith("cuda"):
        if local >= torch.cuda.device_count():
            raise ConfigError(f"torchrun started {size} processes per node but only {torch.cuda.device_count()} "
                              f"GPU(s) are visible to rank {rank}: use --nproc-per-node <= the GPU count "
                              '(or [backend] devices = "gpu:0,1,..." to let retrain launch it).')
        torch.cuda.set_device(local)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return World(rank=rank, size=size, local_rank=local, device=device, backend=backend)


class RankReductions:
    """Cross-rank sums that every distributed trainer needs (uses ``self.world``)."""

    world: World

    def global_tokens(self, local_tokens: float) -> float:
        """The token count of the whole step (all ranks): the denominator of the global token mean."""
        return self.world.all_reduce_sum([local_tokens])[0]

    def reduce_sums(self, sums: dict[str, float]) -> dict[str, float]:
        """Metric sums over all ranks (clip counts, ratio sums, mismatch sums, ...)."""
        keys = sorted(sums)
        return dict(zip(keys, self.world.all_reduce_sum([sums[k] for k in keys])))
