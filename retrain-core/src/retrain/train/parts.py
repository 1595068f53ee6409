"""The run's components (:class:`Parts`), each built by name from the config, the same way for
``retrain RUN.toml`` (``retrain.train.runner``) and ``retrain eval`` (``retrain.cli.eval_cmd``).

Optional members of a component (``retrain.protocols``) are resolved here, once: the
environment's own reward, its own episodes (``rollout``), the back-pressure wrapper around the
engine. The loop then calls the parts without asking what they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from retrain.errors import in_config
from retrain.lifecycle import RunHooks
from retrain.protocols import Backend, Environment, Reward, optional
from retrain.train.episodes import episodes_for
from retrain.train.shards import OneProcess

if TYPE_CHECKING:
    from retrain.backpressure import BackpressureController
    from retrain.protocols import Credit, Engine, Logger, Reward, ShardPlan
    from retrain.train.episodes import Episodes
    from retrain.types import RunContext


@dataclass
class Parts:
    """The run's components, each built by name from the config."""

    backend: Backend
    engine: Engine  # weight sync, evaluation; training samples through ``episodes``
    environment: Environment
    reward: Reward  # [reward] type, or the environment's own
    credit: Credit
    episodes: Episodes  # the step's generation: prompts -> engine (back-pressure chunks when enabled), or the environment's own
    hooks: RunHooks  # plugins' lifecycle hooks (retrain.lifecycle)
    loggers: list[Logger] = field(default_factory=list)
    backpressure: BackpressureController | None = None  # USL batch controller when [backpressure] enabled (checkpointed)
    shards: ShardPlan = field(default_factory=OneProcess)  # torchrun: retrain.distributed.step.StepShards


def build_parts(ctx: RunContext) -> Parts:
    """Build environment, backend, engine, reward and credit from the config (loggers come later).
    A component's error that names a section but not the file (``[data] path = ...: no such
    file``) gets the config file in front."""
    with in_config(ctx.config.source):
        return _build_parts(ctx)


def _build_parts(ctx: RunContext) -> Parts:
    from retrain.config import check_provider_keys
    from retrain.rewards import build_reward

    cfg, reg, src = ctx.config, ctx.registry, ctx.config.source
    # the data first: a bad [data] path or preset is one line before any model loads (no tokenizer yet)
    if cfg.environment.provider:
        environment = reg.build("environment", cfg.environment.provider,
                                where=f"{src} [environment] provider", ctx=ctx)
        check_provider_keys(cfg, environment)  # [data] / [reward] keys it would ignore are refused
    else:
        environment = reg.build("environment", cfg.data.source, where=f"{src} [data] source", ctx=ctx)
    backend = reg.build("backend", cfg.backend.backend, where=f"{src} [backend] backend", ctx=ctx)
    ctx.backend, ctx.tokenizer = backend, backend.tokenizer
    check_prompts = optional(environment, Environment, "check_prompts")
    if check_prompts is not None:
        check_prompts(ctx)  # e.g. a jsonl prompt longer than the model's context, by line number
    engine = reg.build("engine", cfg.inference.engine, where=f"{src} [inference] engine", ctx=ctx)
    reward = optional(environment, Environment, "reward") or build_reward(ctx)  # names, dotted functions or classes
    credit = build_credit(ctx)
    controller = build_backpressure(ctx)
    sampler = engine
    if controller is not None:
        from retrain.backpressure import BackpressureEngine

        sampler = BackpressureEngine(engine, controller)
    return Parts(backend, engine, environment, reward, credit, episodes_for(ctx, environment, sampler),
                 RunHooks(reg.pm.hook), backpressure=controller)


def build_backpressure(ctx: RunContext) -> BackpressureController | None:
    """The USL back-pressure controller, capped by the KV cache that fits on the accelerator."""
    section = ctx.config.section("backpressure")
    if not section["enabled"]:
        return None
    from retrain.backpressure import BackpressureController, memory_cap_for_model

    model = optional(ctx.backend, Backend, "model")
    prompt_len = 512  # a conservative prompt length for the memory bound; chunks are whole groups anyway
    cap = memory_cap_for_model(model, prompt_len, ctx.config.training.max_tokens, section["memory_fraction"]) \
        if model is not None else None
    return BackpressureController.from_config(section, memory_cap=cap)


def build_credit(ctx: RunContext) -> Credit:
    from retrain.advantages.credit import build_credit as build

    return build(ctx)


def build_loggers(ctx: RunContext) -> list[Logger]:
    """[logging] loggers (+ jsonl always, + wandb when wandb_project is set)."""
    cfg = ctx.config
    names = list(dict.fromkeys(["jsonl", *cfg.logging.loggers]))
    if cfg.logging.wandb_project and "wandb" not in names:
        names.append("wandb")
    return [ctx.registry.build("logger", n, where=f"{cfg.source} [logging] loggers", ctx=ctx) for n in names]


def close_parts(parts: Parts) -> None:
    """Close loggers, then the engine, reward and environment (each that has ``close``), then the
    backend (last: the engine may sample through it)."""
    for logger in parts.loggers:
        logger.close()
    parts.engine.close()
    optional(parts.reward, Reward, "close")()
    optional(parts.environment, Environment, "close")()
    optional(parts.backend, Backend, "close")()
