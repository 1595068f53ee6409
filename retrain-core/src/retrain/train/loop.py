"""The RL loop, top to bottom (docs/architecture.md). Shapes: B prompts, G samples, N = B*G, T tokens.

Every stage is a component chosen by name through the plugin registry::

    tasks     = environment.sample(B)                     [data] source / [environment] provider
    prompts   = render_prompts(config, tokenizer, tasks)   [data] prompt_template, chat_template
    rollouts  = engine.generate(prompts, G)               [inference] engine
    rewards   = reward.score(texts, references)           [reward] type (or the environment's own)
    token_adv = credit.compute(rewards, rollouts, step)   [algorithm] advantage_mode + transform_mode
    metrics   = backend.train_step(rollouts, token_adv)   [backend] backend, [algorithm] loss
    engine.sync(backend, version)                         new weights -> engine
    loggers.log(step, metrics); checkpoint every save_every
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from retrain.errors import RetrainError
from retrain.rewards import build_reward
from retrain.train.guards import check_sync, check_update
from retrain.types import Rollouts, SamplingParams

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrain.types import RunContext


@dataclass
class Parts:
    """The run's components, each built by name from the config."""

    backend: Any
    engine: Any
    environment: Any
    reward: Any
    credit: Any
    loggers: list[Any] = field(default_factory=list)
    backpressure: Any = None  # USL batch controller when [backpressure] enabled


def build_parts(ctx: RunContext) -> Parts:
    """Build backend, engine, environment, reward and credit from the config (loggers come later)."""
    cfg, reg, src = ctx.config, ctx.registry, ctx.config.source
    backend = reg.build("backend", cfg.backend.backend, where=f"{src} [backend] backend", ctx=ctx)
    ctx.backend, ctx.tokenizer = backend, backend.tokenizer
    engine = reg.build("engine", cfg.inference.engine, where=f"{src} [inference] engine", ctx=ctx)
    if cfg.environment.provider:
        environment = reg.build("environment", cfg.environment.provider,
                                where=f"{src} [environment] provider", ctx=ctx)
    else:
        environment = reg.build("environment", cfg.data.source, where=f"{src} [data] source", ctx=ctx)
    reward = getattr(environment, "reward", None) or build_reward(ctx)  # names, dotted functions or classes
    return Parts(backend, engine, environment, reward, build_credit(ctx), backpressure=build_backpressure(ctx))


def build_backpressure(ctx: RunContext) -> Any:
    """The USL back-pressure controller, capped by the KV cache that fits on the accelerator."""
    section = ctx.config.section("backpressure")
    if not section["enabled"]:
        return None
    from retrain.backpressure import BackpressureController, memory_cap_for_model

    model = getattr(ctx.backend, "model", None)
    prompt_len = 512  # a conservative prompt length for the memory bound; chunks are whole groups anyway
    cap = memory_cap_for_model(model, prompt_len, ctx.config.training.max_tokens, section["memory_fraction"]) \
        if model is not None else None
    return BackpressureController.from_config(section, memory_cap=cap)


def build_credit(ctx: RunContext) -> Any:
    from retrain.advantages.credit import build_credit as build

    return build(ctx)


def build_loggers(ctx: RunContext) -> list[Any]:
    """[logging] loggers (+ jsonl always, + wandb when wandb_project is set)."""
    cfg = ctx.config
    names = list(dict.fromkeys(["jsonl", *cfg.logging.loggers]))
    if cfg.logging.wandb_project and "wandb" not in names:
        names.append("wandb")
    return [ctx.registry.build("logger", n, where=f"{cfg.source} [logging] loggers", ctx=ctx) for n in names]


def step_seed(seed: int, step: int) -> int:
    """Sampling seed of a step: a pure function of (seed, step), so a resumed run samples the same."""
    return (seed * 1_000_003 + step * 7_919) % (2**63 - 1)


def render_prompts(ctx: RunContext, tasks: list[Any]) -> list[list[int]]:
    from retrain.prompts import render_prompts as render

    return render(ctx.config, ctx.tokenizer, tasks)


def train_step(ctx: RunContext, parts: Parts, step: int) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """One RL step: sample, generate, score, assign credit, update, sync. Returns (metrics, samples)."""
    import torch

    t = ctx.config.training
    clock = Clock()

    tasks = parts.environment.sample(t.batch_size)  # B tasks
    dist = ctx.extras.get("dist")  # torchrun runs: retrain.distributed.step.StepShards (whole groups per rank)
    my_tasks = dist.share(tasks) if dist else tasks  # B/W tasks

    with clock("generate"):
        params = SamplingParams(n=t.group_size, max_tokens=t.max_tokens, temperature=t.temperature, top_p=t.top_p,
                                seed=step_seed(t.seed, step), want_entropy=True,
                                row_offset=dist.row_offset(len(tasks)) if dist else None)
        if hasattr(parts.environment, "rollout"):  # the environment runs its own episodes (retrain-verifiers)
            prompt_ids, gen = parts.environment.rollout(parts.engine, ctx.tokenizer, my_tasks, params)  # N, N rows
        else:
            prompt_ids = render_prompts(ctx, my_tasks)  # B prompts
            if parts.backpressure is not None:  # chunks of whole groups sized from the USL fit
                from retrain.backpressure import generate_with_backpressure

                gen = generate_with_backpressure(parts.engine, prompt_ids, params, parts.backpressure)  # N rows
            else:
                gen = parts.engine.generate(prompt_ids, params)  # N rows
        if dist:
            prompt_ids, gen = dist.gather_generation(prompt_ids, gen)  # every rank's rows, global order
    if gen.policy_version != parts.backend.version:
        raise RetrainError(f"engine sampled from policy version {gen.policy_version}, the trainer is at "
                           f"{parts.backend.version}: weight sync failed (stale weights would train off-policy).")
    rollouts = Rollouts.from_generation(tasks, prompt_ids, gen, t.group_size)  # [N, T] tensors

    with clock("reward"):
        result = dist.score(parts.reward, rollouts) if dist else parts.reward.score(rollouts.texts, rollouts.references)
        rewards = torch.tensor(result.rewards, dtype=torch.float32)  # [N]

    token_adv, credit_metrics = parts.credit.compute(rewards, rollouts, step)  # [N, T]

    with clock("train"):
        shares = bool(getattr(parts.engine, "shares_weights", False))
        mine = dist.rows(rollouts, token_adv) if dist else (rollouts, token_adv)  # this rank's rows
        train_metrics = parts.backend.train_step(*mine, importance_correction=not shares)
        train_metrics.update(check_update(ctx, step, rollouts, train_metrics))  # non-finite: skip, bounded

    with clock("sync"):
        parts.engine.sync(parts.backend, parts.backend.version)
        train_metrics.update(check_sync(ctx, parts.engine, parts.backend, step, rollouts.prompt_ids))

    metrics = {**rollout_metrics(rollouts, rewards, result), **getattr(parts.environment, "rollout_metrics", dict)(),
               **credit_metrics, **train_metrics,
               **clock.metrics(), **throughput(rollouts, clock),
               **(parts.backpressure.metrics() if parts.backpressure is not None else {})}
    return metrics, sample_rows(step, rollouts, rewards)


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
def run(ctx: RunContext, parts: Parts, start_step: int, *, should_stop: Callable[[], bool],
        save: Callable[[int], None], write_samples: Callable[[list[dict[str, Any]]], None]) -> int:
    """Steps start_step+1 .. max_steps; evaluation per [eval]; checkpoints per save_every.

    Returns the last completed step. Stops early (after saving) when ``should_stop()`` turns true.
    """
    cfg = ctx.config
    t, ev = cfg.training, cfg.eval
    last_saved = start_step
    if start_step == 0 and ev.at_start:
        start_eval = evaluate(ctx, parts, 0)
        if start_eval:
            log(parts, 0, start_eval)
    step = start_step
    while step < t.max_steps:
        if should_stop():
            break
        step += 1
        metrics, samples = train_step(ctx, parts, step)
        if (ev.every and step % ev.every == 0) or (ev.at_end and step == t.max_steps):
            metrics.update(evaluate(ctx, parts, step))
        log(parts, step, metrics)
        if cfg.logging.samples_every and step % cfg.logging.samples_every == 0:
            write_samples(samples)
        if (t.save_every and step % t.save_every == 0) or step == t.max_steps:
            save(step)
            last_saved = step
    if step != last_saved:  # interrupted between scheduled saves
        save(step)
    return step


def evaluate(ctx: RunContext, parts: Parts, step: int) -> dict[str, float]:
    """Held-out evaluation through ``retrain.evaluation.run_eval`` when that module is installed."""
    if ctx.extras.get("dist") is not None and not ctx.extras["dist"].is_main:
        return {}  # torchrun runs: rank 0 evaluates with its full replica; its rows are the logged ones
    try:
        from retrain.evaluation import run_eval
    except ImportError:
        return {}
    return dict(run_eval(ctx, parts.engine, parts.environment, parts.reward, step) or {})


def log(parts: Parts, step: int, metrics: dict[str, float]) -> None:
    for logger in parts.loggers:
        logger.log(step, metrics)
