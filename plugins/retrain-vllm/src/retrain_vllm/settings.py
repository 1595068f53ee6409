"""What both vLLM modes need to start (:class:`EngineSettings`) and how the factory derives it.

Its own module so that the factory (``options``) and the two engines (``inprocess``, ``server``)
all import it without importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from retrain.types import RunContext

#: vLLM accepts only these values for --max-lora-rank.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class EngineSettings:
    """What both modes need to start vLLM."""

    def __init__(self, *, model_dir: str, lora_rank: int, max_lora_rank: int, gpu_memory_utilization: float,
                 max_model_len: int, enforce_eager: bool, dtype: str, sleep: bool, cpu_kv_cache_gb: int,
                 seed: int, work_dir: Path) -> None:
        self.model_dir = model_dir
        self.lora_rank = lora_rank
        self.max_lora_rank = max_lora_rank
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.enforce_eager = enforce_eager
        self.dtype = dtype
        self.sleep = sleep
        self.cpu_kv_cache_gb = cpu_kv_cache_gb
        self.seed = seed
        self.work_dir = work_dir

    @property
    def on_cpu(self) -> bool:
        import torch

        return not torch.cuda.is_available()


def engine_dtype(dtype: str, ctx: RunContext) -> str:
    """``auto`` = the trainer's dtype (vLLM's own ``auto`` would run an fp32 model in half precision)."""
    if dtype != "auto":
        return dtype
    trainer = getattr(ctx.backend, "dtype", None)
    if trainer is not None:
        return str(trainer).removeprefix("torch.")
    return "float32" if ctx.config.backend.dtype == "auto" else ctx.config.backend.dtype


def vllm_lora_rank(rank: int, where: str) -> int:
    """The smallest rank vLLM accepts (1, 8, 16, ...) that fits ``rank``; 0 = no LoRA."""
    if rank <= 0:
        return 0
    for r in LORA_RANKS:
        if r >= rank:
            return r
    raise ConfigError(f"{where}: [model] lora_rank = {rank} is above vLLM's largest LoRA rank {LORA_RANKS[-1]}.")


def base_model_dir(ctx: RunContext, work: Path) -> str:
    """A folder (or hub id) vLLM can load that holds the trainer's base weights.

    A local HF folder or hub id is used as is. A GGUF file (e.g. the SmolLM2 fallback) is first
    written as an HF folder by the backend (``save_weights`` at policy version 0 equals the base);
    so is a model with tied embeddings trained with full weights, written untied (retrain_vllm.tied).
    """
    from retrain.backends.local import model_source
    from retrain_vllm.tied import is_tied, untie_folder

    path, gguf = model_source(ctx.config.model.model)
    untie = int(ctx.config.model.lora_rank) == 0 and is_tied(ctx.backend)
    if not gguf and not untie:
        return path
    backend = ctx.backend
    if backend is None or not hasattr(backend, "save_weights"):
        raise ConfigError(f"[model] model = {ctx.config.model.model!r} is a GGUF file, which the vllm engine "
                          "serves through the backend's HF export; build the backend first.")
    out = work / ("base-untied" if untie else "base")
    if not (out / "config.json").is_file():
        if getattr(backend, "version", 0) != 0:
            raise ConfigError("the vllm engine must be built before training starts (policy version 0).")
        backend.save_weights(out)
        if untie:
            untie_folder(out)
    return str(out)
