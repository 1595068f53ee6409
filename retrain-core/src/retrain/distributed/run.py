"""What ``retrain.train.runner.train`` does differently under torchrun (one object, :class:`DistributedRun`).

* joins the process group (:func:`retrain.distributed.world.init_world`);
* rank 0 picks the run directory and the checkpoint to resume, and tells the others;
* shards the ``local`` backend with FSDP2 (:mod:`retrain.distributed.fsdp`; LoRA: the adapter is
  replicated instead, :mod:`retrain.distributed.lora_replicated`) and replaces the one-process
  shard plan with this rank's (``parts.shards = StepShards(world)``, :mod:`retrain.distributed.step`);
* split mode: an engine that pushes weights to a server (``[inference] engine = "openai"``) is
  synced by rank 0 only; the other ranks adopt the served version (:class:`RankZeroSync`);
* rank 0 alone writes the run directory (config, metrics, samples, logs); checkpoints are
  written by every rank together (:mod:`retrain.distributed.checkpoint`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrain.config import Config
    from retrain.distributed.world import World
    from retrain.train.parts import Parts
    from retrain.types import RunContext


class RankZeroSync:
    """Split mode under torchrun: one weight push per step (rank 0); every rank then serves-checks the same version."""

    def __init__(self, engine: Any, world: World) -> None:
        self.engine, self.world = engine, world

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def generate(self, prompt_ids: list[list[int]], params: Any) -> Any:
        return self.engine.generate(prompt_ids, params)

    def sync(self, backend: Any, version: int) -> None:
        flavour = self.engine.flavour
        if self.world.is_main:
            self.engine.sync(backend, version)
        # the flavour's bookkeeping (served adapter name, path, weight tag, version) is plain data
        state = {k: v for k, v in vars(flavour).items() if isinstance(v, (str, int, bool, float))}
        state = self.world.broadcast_object(state if self.world.is_main else None)
        if not self.world.is_main:
            for k, v in state.items():
                setattr(flavour, k, v)
            flavour.check()

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()


class DistributedRun:
    """A training run spread over the processes of a torchrun job."""

    def __init__(self, world: World) -> None:
        self.world = world

    @property
    def is_main(self) -> bool:
        return self.world.is_main

    def resolve_run(self, cfg: Config, config_path: Path | None, resume: str | None) -> tuple[Path, Path | None]:
        """Rank 0 resolves (fresh name or checkpoint); every rank gets the same answer."""
        from retrain.train import rundir

        answer: Any = None
        if self.is_main:
            try:
                answer = rundir.resolve_run(cfg, config_path, resume)
            except Exception as e:  # noqa: BLE001 - re-raised on every rank below
                answer = e
        answer = self.world.broadcast_object(answer)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def shard(self, ctx: RunContext, parts: Parts) -> None:
        """FSDP2 (full weights) or a replicated adapter (LoRA) over the backend; this rank's shard plan; rank-0 weight sync."""
        from retrain.distributed.fsdp import shard_backend
        from retrain.distributed.step import StepShards
        from retrain.protocols import Backend, optional

        cfg = ctx.config
        if optional(parts.backend, Backend, "model") is None or not hasattr(parts.backend, "dist"):
            raise ConfigError(f"{cfg.source} [backend] backend = \"{cfg.backend.backend}\": torchrun runs shard the "
                              "`local` backend with FSDP2; this backend cannot be sharded. Use backend = \"local\" "
                              "or run one process.")
        shards = StepShards(self.world)
        shards.check_batch(cfg.training.batch_size, f"{cfg.source} [training] batch_size")
        trainer = shard_backend(parts.backend, self.world)
        if self.is_main:
            print(f"distributed: {trainer.mode}", file=sys.stderr, flush=True)
        parts.shards = shards
        ctx.device = self.world.device
        if hasattr(parts.engine, "flavour"):  # an OpenAI-compatible server: split mode
            parts.engine = RankZeroSync(parts.engine, self.world)

    def agree(self, flag: Callable[[], bool]) -> Callable[[], bool]:
        """``flag`` made collective: true on every rank once it is true on any (Ctrl-C reaches the
        ranks at slightly different moments; all must stop before the same step)."""
        return lambda: self.world.all_reduce_sum([float(flag())])[0] > 0

    def save(self, run_dir: Path, step: int, parts: Parts, keep: int) -> Path:
        from retrain.distributed.checkpoint import save_run_checkpoint

        return save_run_checkpoint(self.world, run_dir, step, backend=parts.backend, environment=parts.environment,
                            credit=parts.credit, keep=keep)

    def close(self, clean: bool = False) -> None:
        self.world.close(synchronize=clean)


def start_distributed(cfg: Config) -> DistributedRun | None:
    """Join the torchrun job when there is one (None: an ordinary one-process run)."""
    from retrain.distributed.world import init_world

    world = init_world(cfg.backend.devices)
    if world is None:
        return None
    if world.is_main:
        print(f"distributed: {world.size} processes ({world.backend})", file=sys.stderr, flush=True)
    return DistributedRun(world)
