"""Helpers for the vLLM tests: a real run context and real trainer steps (no mocks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_ctx(model_dir: Path, run_dir: Path | None = None, **sections: dict[str, Any]) -> Any:
    """A run context with a real local backend on ``model_dir`` (LoRA rank 4 unless overridden)."""
    from retrain.config import config_from_dict
    from retrain.plugins import load_plugins
    from retrain.types import RunContext

    data: dict[str, Any] = {"model": {"model": str(model_dir), "lora_rank": 4}, "training": {"lr": 0.05, "seed": 0}}
    for name, body in sections.items():
        data.setdefault(name, {}).update(body)
    reg = load_plugins()
    cfg = config_from_dict(data, source="test.toml", plugin_sections=reg.plugin_sections())
    ctx = RunContext(config=cfg, registry=reg, run_dir=run_dir)
    backend = reg.build("backend", "local", ctx=ctx)
    ctx.backend, ctx.tokenizer = backend, backend.tokenizer
    return ctx


def train_once(backend: Any, gen: Any, prompts: list[list[int]], n: int) -> None:
    """One real optimizer step on a generation (rewards = first token parity: any signal will do)."""
    import torch

    from retrain.types import Rollouts, Task

    tasks = [Task(f"p{i}", "") for i in range(len(prompts))]
    ro = Rollouts.from_generation(tasks, prompts, gen, n)
    adv = torch.tensor([1.0 if (c[0] % 2 if c else 0) else -1.0 for c in gen.completion_ids])  # [N]
    backend.train_step(ro, adv[:, None].expand_as(ro.mask).contiguous(), importance_correction=True)


def trainer_logprobs(backend: Any, prompts: list[list[int]], gen: Any, n: int) -> tuple[Any, Any]:
    """(trainer logprobs [N, T], engine logprobs [N, T]), both zero off the completion mask."""
    import torch

    from retrain.types import Rollouts, Task

    ro = Rollouts.from_generation([Task(f"p{i}", "") for i in range(len(prompts))], prompts, gen, n)
    with torch.no_grad():
        lp, _ = backend.logprobs(ro)  # [N, T]
    return lp * ro.mask, ro.logprobs * ro.mask
