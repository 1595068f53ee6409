"""``train(cfg, registry, config_path, resume)``: one run from config to run directory.

Order: pick the run directory (fresh, or the resumed checkpoint's), seed every RNG, build the
components, restore the checkpoint (weights, optimizer, scheduler, RNG, data cursor, credit
state), drop metrics rows beyond it, then loop. Ctrl-C (SIGINT) or SIGTERM (what schedulers send
before killing a job) finishes the current step, saves a checkpoint and returns normally (exit 0);
a second signal aborts at once.
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
from retrain.types import RunContext

if TYPE_CHECKING:
    from collections.abc import Iterator

    from retrain.config import Config
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


def train(cfg: Config, registry: Registry, config_path: Path | None = None, resume: str | None = None) -> Path:
    """Train per ``cfg``; returns the run directory. ``resume``: None, "latest", or a path."""
    from retrain.distributed.run import start_distributed

    dist = start_distributed(cfg)  # under torchrun: this process's rank (None: one process)
    resolve = dist.resolve_run if dist else rundir.resolve_run
    run_dir, ckpt = resolve(cfg, Path(config_path) if config_path else None, resume)
    seed_everything(cfg.training.seed)
    ctx = RunContext(config=cfg, registry=registry, config_path=Path(config_path) if config_path else None,
                     run_dir=run_dir)
    parts = loop.build_parts(ctx)
    if dist:
        dist.shard(ctx, parts)  # FSDP2 over the ranks + per-rank step hooks (retrain.distributed)
    start_step = 0
    if ckpt is not None:
        state = checkpoint.load_checkpoint(ckpt, backend=parts.backend, environment=parts.environment,
                                           credit=parts.credit)
        start_step = int(state["step"])
        if parts.backpressure is not None and "backpressure" in state.get("extra", {}):
            parts.backpressure.load_state_dict(state["extra"]["backpressure"])
        parts.engine.sync(parts.backend, parts.backend.version)
        print(f"resumed from {ckpt} (step {start_step})", file=sys.stderr)
    main = dist is None or dist.is_main  # only rank 0 writes the run directory
    if main:
        rundir.prepare(run_dir, cfg, registry, start_step)
        parts.loggers = loop.build_loggers(ctx)
        print(f"run directory: {run_dir}", file=sys.stderr)

    def save(step: int) -> None:
        if dist:
            return dist.save(run_dir, step, parts, cfg.training.keep_checkpoints)
        extra = {"backpressure": parts.backpressure.state_dict()} if parts.backpressure is not None else {}
        checkpoint.save_checkpoint(run_dir, step, backend=parts.backend, environment=parts.environment,
                                   credit=parts.credit, extra=extra, keep=cfg.training.keep_checkpoints)

    try:
        with interrupt_flag() as stop:
            should_stop = dist.agree(stop.is_set) if dist else stop.is_set  # torchrun: every rank stops together
            last = loop.run(ctx, parts, start_step, should_stop=should_stop, save=save,
                            write_samples=lambda rows: main and rundir.append_jsonl(run_dir / rundir.SAMPLES, rows))
            if stop.is_set():
                print(f"interrupted after step {last}: checkpoint saved in {run_dir / 'checkpoints'}; "
                      f"continue with --resume latest", file=sys.stderr)
    finally:
        for logger in parts.loggers:
            logger.close()
        for component in (parts.engine, parts.reward, parts.environment):
            close = getattr(component, "close", None)
            if callable(close):
                close()
        if dist:
            dist.close()
    if main:  # the run's headline: held-out accuracy before -> after (retrain.train.summary)
        from retrain.train.summary import accuracy_line

        line = accuracy_line(run_dir)
        if line:
            print(line, flush=True)
    return run_dir
