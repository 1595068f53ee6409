"""How a step's two halves are scheduled: ``[training] max_staleness`` (docs/training.md, "Asynchronous training").

``max_staleness = 0``, :class:`Synchronous`: ``loop.train_step``, sample from the trainer's
weights, then train on that batch (on-policy).

``max_staleness = 1``, :class:`OneStepOff`: while step k trains, a background thread collects the
batch of step k+1 (sampling, scoring) from the weights the engine holds, version k-1; the engine
is synced to version k only once that batch is in, so nothing samples from weights that change::

    main thread      update k: v(k-1) -> v(k) ......... wait | sync engine to v(k) | update k+1 ...
    sampler thread   collect k+1 from v(k-1) ...........     |                     | collect k+2 from v(k) ...

Step k+1 then trains on a batch one version behind, corrected by the truncated importance weight
(``retrain.train.loss``) against the engine's sampling logprobs. The pytorch engine samples from a
snapshot of the policy (``sample_from_snapshot``) refreshed at each sync, on CUDA on a stream of its own so its
kernels run beside the optimizer's instead of queueing behind them; server engines (openai,
vllm) sample in their own process and sync by version as before.

Checkpoints: a step that ends in a scheduled checkpoint (``save_every``, the last step) starts
no prefetch, so nothing half-done is left out of it, and the step after it samples synchronously
from the saved weights, in the run that goes on and in one resumed from it alike: resume is
exact. A run that stops between checkpoints (Ctrl-C, SIGTERM, a plugin's stop) drops the batch
it prefetched and rewinds the data cursor and the back-pressure controller to before it; the
resumed run samples those same tasks again from the saved weights (0 versions behind).
"""

from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING, Any

from retrain.protocols import Engine, optional
from retrain.train import loop

if TYPE_CHECKING:
    from retrain.train.loop import Collected
    from retrain.train.parts import Parts
    from retrain.types import RunContext

Report = tuple[dict[str, float], list[dict[str, Any]]]


class Synchronous:
    """``max_staleness = 0``: collect, then learn (``loop.train_step``)."""

    def __init__(self, ctx: RunContext, parts: Parts) -> None:
        self.ctx, self.parts = ctx, parts

    def step(self, step: int) -> Report:
        return loop.train_step(self.ctx, self.parts, step)

    def close(self) -> None:
        """Nothing in flight."""


class Prefetch(threading.Thread):
    """``loop.collect_rollouts`` of one step in a background thread; :meth:`batch` joins it."""

    def __init__(self, ctx: RunContext, parts: Parts, step: int, rewind: dict[str, Any]) -> None:
        super().__init__(name=f"retrain-sampler-step-{step}", daemon=True)
        self.ctx, self.parts, self.for_step, self.rewind = ctx, parts, step, rewind
        self.clock = loop.Clock()  # time/generate and time/reward of this batch (overlapping a training step)
        self.result: Collected | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = loop.collect_rollouts(self.ctx, self.parts, self.for_step, self.clock)
        except BaseException as e:  # handed to the main thread by batch()
            self.error = e

    def batch(self) -> Collected:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class OneStepOff:
    """``max_staleness = 1``: batch k+1 is collected while step k trains (see the module docstring)."""

    def __init__(self, ctx: RunContext, parts: Parts) -> None:
        self.ctx, self.parts = ctx, parts
        self.pending: Prefetch | None = None
        snapshot = optional(parts.engine, Engine, "sample_from_snapshot")
        if snapshot is not None:  # an in-process engine: it must not read weights the optimizer is changing
            snapshot()

    def step(self, step: int) -> Report:
        ctx, parts, t = self.ctx, self.parts, self.ctx.config.training
        clock = loop.Clock()
        if self.pending is not None and self.pending.for_step == step:
            batch = self.pending.batch()  # done already: joined before the last sync
            clock.phases.update(self.pending.clock.phases)
            self.pending = None
        else:
            batch = loop.collect_rollouts(ctx, parts, step, clock)  # first step, or after a checkpoint
        trainer_version = parts.backend.version
        if step < t.max_steps and not loop.save_due(t, step):
            self.pending = Prefetch(ctx, parts, step + 1, self.rewind_point())
            self.pending.start()
        try:
            learned = loop.update(ctx, parts, step, batch, clock)
        finally:
            with clock("wait"):  # the engine syncs only once nothing samples from it
                if self.pending is not None:
                    self.pending.join()
        learned.update(loop.sync_engine(ctx, parts, step, batch, clock))
        metrics, samples = loop.step_report(step, batch, learned, clock)
        metrics.update(self.staleness(batch.rollouts.policy_version, trainer_version, batch.rollouts.n))
        return metrics, samples

    @staticmethod
    def staleness(sampled: int, trained: int, rows: int) -> dict[str, float]:
        """``staleness/*``: the batch's and the trainer's policy versions; versions behind, mean and max over the
        batch's rows (one version per batch today, so they are equal)."""
        behind = [trained - sampled] * rows
        return {"staleness/policy_version": float(sampled), "staleness/trainer_version": float(trained),
                "staleness/mean": sum(behind) / max(1, rows), "staleness/max": float(max(behind, default=0))}

    def rewind_point(self) -> dict[str, Any]:
        """What collecting a batch moves forward (data cursor, back-pressure controller), to undo a dropped prefetch."""
        parts = self.parts
        return {"environment": copy.deepcopy(parts.environment.state_dict()),
                "backpressure": None if parts.backpressure is None else copy.deepcopy(parts.backpressure.state_dict())}

    def close(self) -> None:
        """Drop a prefetched batch nothing trained on and rewind to before it (a stop between checkpoints)."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        pending.join()
        self.parts.environment.load_state_dict(pending.rewind["environment"])
        if self.parts.backpressure is not None:
            self.parts.backpressure.load_state_dict(pending.rewind["backpressure"])


def make_schedule(ctx: RunContext, parts: Parts) -> Synchronous | OneStepOff:
    """The schedule ``[training] max_staleness`` asks for."""
    from retrain.errors import ConfigError

    if ctx.config.training.max_staleness == 0:
        return Synchronous(ctx, parts)
    if parts.shards.processes > 1:
        raise ConfigError(f"{ctx.config.source} [training] max_staleness = {ctx.config.training.max_staleness}: "
                          "asynchronous training runs in one process; under torchrun set max_staleness = 0.")
    return OneStepOff(ctx, parts)
