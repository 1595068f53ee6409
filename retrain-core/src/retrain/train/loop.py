"""The RL loop, top to bottom (docs/architecture.md). Shapes: B prompts, G samples, N = B*G, T tokens.

Every stage is a component chosen by name through the plugin registry (``retrain.train.parts``)::

    tasks     = environment.sample(B)                     [data] source / [environment] provider
    mine      = shards.share(tasks)                       this process's prompts (all of them in one process)
    rollouts  = episodes.run(mine, G)                     [inference] engine: prompts -> completions,
                                                          or the environment's own episodes
    rewards   = shards.score(reward, rollouts)            [reward] type (or the environment's own)
    token_adv = credit.compute(rewards, rollouts, step)   [algorithm] advantage_mode + transform_mode
    metrics   = backend.train_step(shards.rows(...))      [backend] backend, [algorithm] loss
    engine.sync(backend, version)                         new weights -> engine
    loggers.log(step, metrics); checkpoint every save_every

The options are objects, chosen once when the parts are built: ``shards`` is the one-process
plan (identity) or torchrun's whole groups per rank; ``episodes`` renders prompts for the engine
(wrapped in back pressure's chunking when enabled) or lets the environment run its episodes.
A step is two halves, :func:`collect_rollouts` (sampling, scoring) and :func:`learn` (credit,
update, sync), so a schedule that overlaps them (asynchronous RL, ``[training] max_staleness``)
replaces only :func:`train_step`: ``retrain.train.schedule``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from retrain.errors import RetrainError
from retrain.protocols import Engine, optional
from retrain.train.guards import check_sync, check_update
from retrain.train.memory import memory_peaks, trim_heap
from retrain.types import Rollouts, SamplingParams

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from retrain.config import TrainingConfig
    from retrain.protocols import RewardResult
    from retrain.train.parts import Parts
    from retrain.types import RunContext


def step_seed(seed: int, step: int) -> int:
    """Sampling seed of a step: a pure function of (seed, step), so a resumed run samples the same."""
    return (seed * 1_000_003 + step * 7_919) % (2**63 - 1)


def sampling_params(t: TrainingConfig, step: int, row_offset: int | None) -> SamplingParams:
    """The step's sampling: G samples per prompt at [training] temperature / top_p, seeded by (seed, step)."""
    return SamplingParams(n=t.group_size, max_tokens=t.max_tokens, temperature=t.temperature, top_p=t.top_p,
                          seed=step_seed(t.seed, step), want_entropy=True, row_offset=row_offset)


@dataclass
class Collected:
    """A step's scored rollouts: what :func:`learn` trains on."""

    rollouts: Rollouts  # [N, T]
    result: RewardResult  # rewards of the N rows, per-term values, errors, timeouts
    rewards: torch.Tensor  # [N]
    episode_metrics: dict[str, float]


def collect_rollouts(ctx: RunContext, parts: Parts, step: int, clock: Clock) -> Collected:
    """Sample B tasks, generate G completions each (this process's share), score all N rows."""
    import torch

    t = ctx.config.training
    tasks = parts.environment.sample(t.batch_size)  # B tasks
    mine = parts.shards.share(tasks)  # B/W tasks (all B in one process)
    with clock("generate"):
        params = sampling_params(t, step, parts.shards.row_offset(len(tasks)))
        prompt_ids, gen = parts.episodes.run(mine, params)  # B/W prompts, N/W rows
        prompt_ids, gen = parts.shards.gather_generation(prompt_ids, gen)  # every process's rows, global order
        trim_heap()  # generation's freed tensors out of the heap before training allocates (train/memory.py)
    rollouts = Rollouts.from_generation(tasks, prompt_ids, gen, t.group_size)  # [N, T] tensors
    with clock("reward"):
        result = parts.shards.score(parts.reward, rollouts)
        rewards = torch.tensor(result.rewards, dtype=torch.float32)  # [N]
    return Collected(rollouts, result, rewards, parts.episodes.metrics())


def learn(ctx: RunContext, parts: Parts, step: int, batch: Collected, clock: Clock) -> dict[str, float]:
    """Credit, one optimizer step on this process's rows, new weights to the engine; returns the metrics."""
    return {**update(ctx, parts, step, batch, clock), **sync_engine(ctx, parts, step, batch, clock)}


def update(ctx: RunContext, parts: Parts, step: int, batch: Collected, clock: Clock) -> dict[str, float]:
    """Credit and one optimizer step on this process's rows; returns credit, loss and guard metrics."""
    sampled, trained = batch.rollouts.policy_version, parts.backend.version
    check_policy_version(sampled, trained, ctx.config.training.max_staleness)
    token_adv, credit_metrics = parts.credit.compute(batch.rewards, batch.rollouts, step)  # [N, T]
    with clock("train"):
        # same weights, same version: the engine's logprobs are the trainer's; else the truncated IS weight
        same = optional(parts.engine, Engine, "shares_weights") and sampled == trained
        mine = parts.shards.rows(batch.rollouts, token_adv)  # this process's rows: [N/W, T] x2
        train_metrics = parts.backend.train_step(*mine, importance_correction=not same)
        trim_heap()
        train_metrics.update(check_update(ctx, step, batch.rollouts, train_metrics))  # non-finite: skip, bounded
    return {**credit_metrics, **train_metrics}


def sync_engine(ctx: RunContext, parts: Parts, step: int, batch: Collected, clock: Clock) -> dict[str, float]:
    """The trainer's new weights to the engine, then the engine-vs-trainer logprob check."""
    with clock("sync"):
        parts.engine.sync(parts.backend, parts.backend.version)
        return check_sync(ctx, parts.engine, parts.backend, step, batch.rollouts.prompt_ids,
                          processes=parts.shards.processes)


def train_step(ctx: RunContext, parts: Parts, step: int) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """One RL step: sample, generate, score, assign credit, update, sync. Returns (metrics, samples)."""
    clock = Clock()
    batch = collect_rollouts(ctx, parts, step, clock)
    learned = learn(ctx, parts, step, batch, clock)
    return step_report(step, batch, learned, clock)


def step_report(step: int, batch: Collected, learned: dict[str, float],
                clock: Clock) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(metrics, samples) of a step that trained on ``batch``."""
    metrics = {**rollout_metrics(batch.rollouts, batch.rewards, batch.result), **batch.episode_metrics,
               **learned, **clock.metrics(), **throughput(batch.rollouts, clock), **memory_peaks()}
    return metrics, sample_rows(step, batch.rollouts, batch.rewards)


def check_policy_version(sampled: int, trained: int, max_staleness: int = 0) -> None:
    """The engine's batch may be at most ``max_staleness`` versions older than the trainer's weights
    (0: the same weights, on-policy); anything else would train silently further off-policy."""
    if 0 <= trained - sampled <= max_staleness:
        return
    if max_staleness == 0:
        raise RetrainError(f"engine sampled from policy version {sampled}, the trainer is at "
                           f"{trained}: weight sync failed (stale weights would train off-policy).")
    raise RetrainError(f"engine sampled from policy version {sampled}, the trainer is at {trained}: "
                       f"{trained - sampled} versions behind, [training] max_staleness = {max_staleness} allows "
                       f"0 to {max_staleness}: weight sync or the schedule failed (the batch would train further "
                       "off-policy than configured).")


def save_due(t: TrainingConfig, step: int) -> bool:
    """Whether ``step`` ends in a scheduled checkpoint ([training] save_every, and the last step)."""
    return bool(t.save_every and step % t.save_every == 0) or step == t.max_steps


# -- metrics ---------------------------------------------------------------------------------------
class Clock:
    """Wall-clock seconds per phase: ``with clock("generate"): ...`` -> time/generate."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.phases: dict[str, float] = {}

    def __call__(self, name: str) -> Any:
        clock = self

        class _Phase:
            def __enter__(self) -> None:
                self.t0 = time.perf_counter()

            def __exit__(self, *exc: object) -> None:
                clock.phases[name] = clock.phases.get(name, 0.0) + time.perf_counter() - self.t0

        return _Phase()

    def metrics(self) -> dict[str, float]:
        out = {f"time/{k}": v for k, v in self.phases.items()}
        out["time/step"] = time.perf_counter() - self.start
        return out


def rollout_metrics(rollouts: Rollouts, rewards: Any, result: Any) -> dict[str, float]:
    """reward/*, completion/*, entropy/mean."""
    lengths = rollouts.mask.sum(1)  # [N]
    out = {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
        "reward/pass_rate": float((rewards >= 1.0 - 1e-6).float().mean()),
        "reward/errors": float(result.errors),
        "reward/timeouts": float(result.timeouts),
        "reward/unparsed_refs": float(getattr(result, "unparsed_refs", 0)),
        "completion/length_mean": float(lengths.mean()),
        "completion/truncated_frac": sum(r == "length" for r in rollouts.finish_reasons) / max(1, rollouts.n),
    }
    for name, values in result.terms.items():
        out[f"reward/{name}"] = sum(values) / max(1, len(values))
    if rollouts.entropy is not None:
        out["entropy/mean"] = float((rollouts.entropy * rollouts.mask).sum() / rollouts.mask.sum().clamp(min=1))
    return out


def throughput(rollouts: Rollouts, clock: Clock) -> dict[str, float]:
    gen_tokens = float(rollouts.mask.sum())
    train_tokens = gen_tokens + sum(len(p) for p in rollouts.prompt_ids)
    out = {}
    if clock.phases.get("generate"):
        out["throughput/gen_tok_per_s"] = gen_tokens / clock.phases["generate"]
    if clock.phases.get("train"):
        out["throughput/train_tok_per_s"] = train_tokens / clock.phases["train"]
    return out


def sample_rows(step: int, rollouts: Rollouts, rewards: Any, limit: int = 8) -> list[dict[str, Any]]:
    """The first ``limit`` rows of the step for samples.jsonl."""
    rows = []
    for i in range(min(limit, rollouts.n)):
        task = rollouts.tasks[i // rollouts.group_size]
        prompt = task.prompt if isinstance(task.prompt, str) else task.prompt[-1].get("content", "")
        rows.append({"step": step, "row": i, "task_id": task.id, "prompt": prompt, "completion": rollouts.texts[i],
                     "reference": task.answer, "reward": float(rewards[i]),
                     "finish_reason": rollouts.finish_reasons[i]})
    return rows


# -- the outer loop ------------------------------------------------------------------------------------
class Schedule(Protocol):
    """How steps run (``retrain.train.schedule``): one after the other, or overlapping."""

    def step(self, step: int) -> tuple[dict[str, float], list[dict[str, Any]]]: ...

    def close(self) -> None:
        """Before the last save: nothing may be left half-done."""


def run(ctx: RunContext, parts: Parts, start_step: int, *, schedule: Schedule, should_stop: Callable[[], bool],
        save: Callable[[int], None], write_samples: Callable[[list[dict[str, Any]]], None]) -> tuple[int, str]:
    """Steps start_step+1 .. max_steps; evaluation per [eval]; plugins' lifecycle hooks; checkpoints per save_every.

    Returns (last completed step, status): "completed"; "interrupted" when ``should_stop()`` turned
    true (Ctrl-C, SIGTERM); "stopped" when a plugin asked (``retrain_stop_run``). Either way the last
    step is saved. ``schedule`` runs each step (``retrain.train.schedule.make_schedule``: [training] max_staleness).
    """
    cfg = ctx.config
    t, ev = cfg.training, cfg.eval
    last_saved = start_step
    if start_step == 0 and ev.at_start:
        start_eval = evaluate(ctx, parts, 0)
        if start_eval:
            log(parts, 0, start_eval)
    step, status = start_step, "completed"
    while step < t.max_steps:
        if should_stop():
            status = "interrupted"
            break
        step += 1
        metrics, samples = schedule.step(step)
        if (ev.every and step % ev.every == 0) or (ev.at_end and step == t.max_steps):
            metrics.update(evaluate(ctx, parts, step))
        metrics.update(parts.hooks.after_step(ctx, step, metrics))  # plugins' extra metrics
        log(parts, step, metrics)
        if cfg.logging.samples_every and step % cfg.logging.samples_every == 0:
            write_samples(samples)
        if save_due(t, step):
            save(step)
            last_saved = step
        if stop_requested(ctx, parts, step, metrics) and step < t.max_steps:
            status = "stopped"
            break
    schedule.close()  # a prefetched batch nothing trained on is dropped, the data cursor rewound to before it
    if step != last_saved:  # interrupted or stopped between scheduled saves
        save(step)
    return step, status


def stop_requested(ctx: RunContext, parts: Parts, step: int, metrics: dict[str, float]) -> bool:
    """Whether a plugin asks the run to stop after ``step`` (each reason is printed); every process agrees."""
    reasons = parts.hooks.stop_reasons(ctx, step, metrics)
    for reason in reasons:
        print(f"stop after step {step}: {reason}", file=sys.stderr, flush=True)
    return parts.shards.agree(bool(reasons))


def evaluate(ctx: RunContext, parts: Parts, step: int) -> dict[str, float]:
    """Held-out evaluation (``retrain.evaluation``) by the main process, with its full replica; others log nothing."""
    from retrain.evaluation import run_eval

    if not parts.shards.is_main:
        return {}
    metrics = run_eval(ctx, parts, step)
    parts.hooks.after_eval(ctx, step, metrics)
    return metrics


def log(parts: Parts, step: int, metrics: dict[str, float]) -> None:
    for logger in parts.loggers:
        logger.log(step, metrics)
