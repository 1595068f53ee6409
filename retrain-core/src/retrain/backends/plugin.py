"""Registers the built-in ``local`` backend (transformers + peft). No torch at import."""

from __future__ import annotations

from typing import Any, Literal

from retrain import hookimpl


def local_backend(devices: str = "auto", dtype: str = "auto", autocast: str = "none",
                  gradient_checkpointing: bool = False, logprob_chunk: int = 1024, micro_batch_size: int | Literal["auto"] = 0,
                  threads: int = 0, compile: bool | Literal["auto"] = "auto", ctx: Any = None) -> Any:
    """Local trainer: transformers + peft, LoRA on all linear projections or full weights ([model] lora_rank)."""
    from retrain.backends.local import LocalBackend

    return LocalBackend(devices=devices, dtype=dtype, autocast=autocast, gradient_checkpointing=gradient_checkpointing,
                        logprob_chunk=logprob_chunk, micro_batch_size=micro_batch_size, threads=threads,
                        compile=compile, ctx=ctx)


local_backend.config_section = "backend"  # type: ignore[attr-defined]


@hookimpl
def retrain_register_backends(register):  # noqa: ANN001,ANN201
    register("local", local_backend)
