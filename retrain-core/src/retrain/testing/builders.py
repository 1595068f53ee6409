"""Builders for component tests: a RunContext from a config dict, Rollouts from completion texts.

    ctx = make_ctx({"algorithm": {"transform_mode": "gtpo"}}, tokenizer=tiny_tokenizer())
    rollouts = make_rollouts(ctx.tokenizer, ["2+2=4", "5"], group_size=2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_ctx(data: dict[str, Any] | None = None, config_path: Path | None = None, tokenizer: Any = None,
             extra: tuple = ()) -> Any:
    from retrain.config import config_from_dict
    from retrain.plugins import load_plugins
    from retrain.types import RunContext

    registry = load_plugins(extra=extra)
    cfg = config_from_dict(data or {}, source=str(config_path or "test.toml"), plugin_sections=registry.plugin_sections())
    return RunContext(config=cfg, registry=registry, config_path=config_path, tokenizer=tokenizer)


def make_rollouts(tokenizer: Any, texts: list[str], group_size: int, logprobs: list[list[float]] | None = None) -> Any:
    from retrain.types import Generation, Rollouts, Task

    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    lps = logprobs or [[-1.0] * len(i) for i in ids]
    gen = Generation(completion_ids=ids, logprobs=lps, finish_reasons=["stop"] * len(ids), texts=texts,
                     policy_version=0)
    tasks = [Task(prompt="p", answer="a") for _ in range(len(ids) // group_size)]
    return Rollouts.from_generation(tasks, [[1]] * len(tasks), gen, group_size)
