"""Registers the built-in loggers: jsonl, console, wandb. No heavy imports at load."""

from __future__ import annotations

from typing import Any

from retrain import hookimpl


def jsonl_logger(ctx: Any = None) -> Any:
    """One JSON row per optimizer step in <run>/metrics.jsonl."""
    from retrain.loggers.jsonl import JsonlLogger

    return JsonlLogger(ctx=ctx)


def console_logger(ctx: Any = None) -> Any:
    """Live progress line (step, reward, accuracy, tok/s, ETA); plain lines when not a terminal."""
    from retrain.loggers.console import ConsoleLogger

    return ConsoleLogger(ctx=ctx)


def wandb_logger(wandb_project: str = "", wandb_entity: str = "", wandb_group: str = "",
                 wandb_tags: list[str] | None = None, wandb_mode: str = "", ctx: Any = None) -> Any:
    """Weights & Biases (offline works; no credentials -> offline logs and one clear message)."""
    from retrain.loggers.wandb import WandbLogger

    return WandbLogger(wandb_project=wandb_project, wandb_entity=wandb_entity, wandb_group=wandb_group,
                       wandb_tags=list(wandb_tags or []), wandb_mode=wandb_mode, ctx=ctx)


for _f in (jsonl_logger, console_logger, wandb_logger):
    _f.config_section = "logging"  # type: ignore[attr-defined]


@hookimpl
def retrain_register_loggers(register):  # noqa: ANN001,ANN201
    register("jsonl", jsonl_logger)
    register("console", console_logger)
    register("wandb", wandb_logger)
