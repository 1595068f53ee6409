"""Registers the built-in ``pytorch`` engine (in-process sampling from the trainer's weights)."""

from __future__ import annotations

from typing import Any

from retrain import hookimpl


def pytorch_engine(ctx: Any = None) -> Any:
    """In-process sampler from the trainer's own weights (KV cache, whole step batched, seeded)."""
    from retrain.engines.pytorch import PytorchEngine

    return PytorchEngine(ctx=ctx)


def openai_engine(url: str = "", flavour: str = "auto", api_key_env: str = "", max_concurrency: int = 8,
                  timeout: float = 600.0, retries: int = 3, ctx: Any = None) -> Any:
    """Any OpenAI-compatible server ([inference] url): vLLM, SGLang, MAX (versioned weight sync) or plain."""
    from retrain.engines.openai import OpenAIEngine

    return OpenAIEngine(url=url, flavour=flavour, api_key_env=api_key_env, max_concurrency=max_concurrency,
                        timeout=timeout, retries=retries, ctx=ctx)


openai_engine.config_section = "inference"  # type: ignore[attr-defined]


@hookimpl
def retrain_register_engines(register):  # noqa: ANN001,ANN201
    register("pytorch", pytorch_engine)
    register("openai", openai_engine)
