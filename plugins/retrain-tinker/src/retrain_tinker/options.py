"""The ``tinker`` backend and engine factories: the backend's keyword arguments are the ``[tinker]`` keys.

Nothing heavy is imported here (``retrain plugins list`` must stay fast); the ``tinker`` SDK is
imported when the backend is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retrain.types import RunContext


def tinker_backend(*, base_model: str, lora_rank: int = 32, base_url: str = "", api_key_env: str = "TINKER_API_KEY",
                   timeout: float = 3600.0, ctx: RunContext | None = None) -> Any:
    """Tinker service: LoRA training through the official tinker SDK (forward_backward + optim_step, save_state).

    base_model: the service's base model name (e.g. "Qwen/Qwen3-8B"); its tokenizer is loaded locally.
    lora_rank: LoRA rank of the adapter the service trains.
    base_url: the service URL; "" = $TINKER_BASE_URL, else the SDK's default (the real service).
    api_key_env: environment variable holding the API key (never written to the run directory).
    timeout: seconds to wait for one operation (the service may queue work); a service that stops
    answering is detected sooner, by a health probe every 15 s while waiting.
    """
    from retrain_tinker.backend import TinkerBackend

    return TinkerBackend(base_model=base_model, lora_rank=lora_rank, base_url=base_url, api_key_env=api_key_env,
                         timeout=timeout, ctx=ctx)


tinker_backend.config_section = "tinker"  # type: ignore[attr-defined]


def tinker_engine(ctx: RunContext | None = None) -> Any:
    """Tinker sampling client: samples the tinker backend's current weights (versioned, stale = error)."""
    from retrain_tinker.engine import TinkerEngine

    return TinkerEngine(ctx=ctx)


tinker_engine.config_section = "inference"  # type: ignore[attr-defined]  # no options of its own
