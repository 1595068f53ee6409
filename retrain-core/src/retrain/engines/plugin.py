"""Registers the built-in ``pytorch`` engine (in-process sampling from the trainer's weights)."""

from __future__ import annotations

from typing import Any

from retrain import hookimpl


def pytorch_engine(ctx: Any = None) -> Any:
    """In-process sampler from the trainer's own weights (KV cache, whole step batched, seeded)."""
    from retrain.engines.pytorch import PytorchEngine

    return PytorchEngine(ctx=ctx)


@hookimpl
def retrain_register_engines(register):  # noqa: ANN001,ANN201
    register("pytorch", pytorch_engine)
