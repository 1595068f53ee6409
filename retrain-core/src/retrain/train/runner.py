"""``train(cfg, registry, config_path, resume)``: one run from config to run directory.

Order: pick the run directory (fresh, or the resumed checkpoint's), seed every RNG, build the
components (``retrain.train.parts``), restore the checkpoint (weights, optimizer, scheduler, RNG,
data cursor, credit state), drop metrics rows beyond it, then loop. Ctrl-C (SIGINT) or SIGTERM
(what schedulers send before killing a job) finishes the current step, saves a checkpoint and
returns normally (exit 0); a second signal aborts at once. Plugins' lifecycle hooks
(``retrain.lifecycle``) see the run start, each checkpoint saved or loaded, and the end.

What differs under torchrun is one object, :class:`OneProcessRun` here and
``retrain.distributed.run.DistributedRun`` there (run directory, sharding, agreement, saving).
"""

from __future__ import annotations

import random
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.train import checkpoint, loop, rundir
from retrain.train.parts import Parts, build_loggers, build_parts, close_parts
from retrain.train.schedule import make_schedule
from retrain.types import RunContext

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from retrain.config import Config
    from retrain.distributed.run import DistributedRun
    from retrain.plugins import Registry


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


#: Signals that stop a run gracefully: Ctrl-C, and what schedulers (Slurm, Kubernetes) send first.
STOP_SIGNALS = {signal.SIGINT: "interrupt (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)"}


@contextmanager
def interrupt_flag() -> Iterator[threading.Event]:
    """An event set by the first SIGINT or SIGTERM; a second one aborts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            if signum == signal.SIGTERM:
                raise SystemExit(128 + signum)
            raise KeyboardInterrupt
        stop.set()
        again = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        print(f"\n{STOP_SIGNALS[signum]}: finishing this step, then saving a checkpoint ({again} again to abort)",
              file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class OneProcessRun:
    """What :func:`train` does in one process; ``retrain.distributed.run.DistributedRun`` is the torchrun one."""

    is_main = True

    def resolve_run(self, cfg: Config, config_path: Path | None, resume: str | None) -> tuple[Path, Path | None]:
        return rundir.resolve_run(cfg, config_path, resume)

    def shard(self, ctx: RunContext, parts: Parts) -> None:
        """Nothing to shard: ``parts.shards`` stays the one-process plan."""

    def agree(self, flag: Callable[[], bool]) -> Callable[[], bool]:
        return flag

    def save(self, run_dir: Path, step: int, parts: Parts, keep: int) -> Path:
        extra = {"backpressure": parts.backpressure.state_dict()} if parts.backpressure is not None else {}
        return checkpoint.save_checkpoint(run_dir, step, backend=parts.backend, environment=parts.environment,
                                          credit=parts.credit, extra=extra, keep=keep)

    def close(self, clean: bool = False) -> None:
        """Nothing to leave."""


def train(cfg: Config, registry: Registry, config_path: Path | None = None, resume: str | None = None) -> Path:
    """Train per ``cfg``; returns the run directory. ``resume``: None, "latest", or a path."""
    from retrain.distributed.run import start_distributed
    from retrain.train.memory import fix_mmap_threshold

    fix_mmap_threshold()  # a heap that does not grow step after step (train/memory.py)
    run: OneProcessRun | DistributedRun = start_distributed(cfg) or OneProcessRun()  # torchrun: this rank's
    run_dir, ckpt = run.resolve_run(cfg, Path(config_path) if config_path else None, resume)
    seed_everything(cfg.training.seed)
    ctx = RunContext(config=cfg, registry=registry, config_path=Path(config_path) if config_path else None,
                     run_dir=run_dir)
    parts = build_parts(ctx)
    run.shard(ctx, parts)  # torchrun: FSDP2 over the ranks + this rank's shard plan (retrain.distributed)
    start_step = 0
    if ckpt is not None:
        state = checkpoint.load_checkpoint(ckpt, backend=parts.backend, environment=parts.environment,
                                           credit=parts.credit)
        start_step = int(state["step"])
        if parts.backpressure is not None and "backpressure" in state.get("extra", {}):
            parts.backpressure.load_state_dict(state["extra"]["backpressure"])
        parts.engine.sync(parts.backend, parts.backend.version)
        print(f"resumed from {ckpt} (step {start_step})", file=sys.stderr)
        parts.hooks.after_load(ctx, start_step, ckpt)
    if run.is_main:  # only rank 0 writes the run directory
        rundir.prepare(run_dir, cfg, registry, start_step)
        parts.loggers = build_loggers(ctx)
        print(f"run directory: {run_dir}", file=sys.stderr)

    def save(step: int) -> None:
        parts.hooks.after_save(ctx, step, run.save(run_dir, step, parts, cfg.training.keep_checkpoints))

    def write_samples(rows: list[dict[str, Any]]) -> None:
        if run.is_main:
            rundir.append_jsonl(run_dir / rundir.SAMPLES, rows)

    status = "failed"
    try:
        parts.hooks.start_run(ctx, start_step)
        with interrupt_flag() as stop:
            last, status = loop.run(ctx, parts, start_step, schedule=make_schedule(ctx, parts),
                                    should_stop=run.agree(stop.is_set), save=save,
                                    write_samples=write_samples)  # torchrun: every rank stops together
            if status != "completed" or stop.is_set():  # a signal during the last step still says so
                how = "interrupted" if stop.is_set() else status
                if last == 0:  # stopped during the first evaluation: nothing trained, nothing saved
                    print(f"{how} before step 1: no checkpoint (nothing was trained); run the same command "
                          f"again to start over", file=sys.stderr)
                else:
                    print(f"{how} after step {last}: checkpoint saved in {run_dir / 'checkpoints'}; "
                          f"continue with --resume latest", file=sys.stderr)
    finally:
        try:
            parts.hooks.end_run(ctx, status)  # "failed" while an exception propagates
        finally:
            close_parts(parts)
            run.close(clean=status != "failed")  # torchrun: ranks leave together only after a clean end
    if run.is_main:  # the run's headline: held-out accuracy before -> after (retrain.train.summary)
        from retrain.train.summary import accuracy_line

        line = accuracy_line(run_dir)
        if line:
            print(line, flush=True)
    return run_dir
