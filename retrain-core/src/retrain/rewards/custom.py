"""Rewards from your own Python function, by dotted path.

Two forms (the function's parameter names decide):

- per item: ``score(response: str, reference: str) -> float``, run in the reward worker
  processes with the per-call ``[reward] timeout`` (timeouts and exceptions are counted and score 0);
  the module must be importable there (site-packages or the working directory);
- batched: ``score_batch(responses: list[str], references: list[str]) -> list[float]``, called
  once per step in the training process (for GPU reward models or remote APIs that batch); an
  exception scores the whole batch 0 and counts every row as an error.

Select it with ``[reward] type = "my_module.score"`` or ``type = "custom"`` + ``function = "..."``.
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any

from retrain.errors import ConfigError
from retrain.components import load_dotted
from retrain.protocols import RewardResult
from retrain.rewards.pool import WorkerPool

log = logging.getLogger("retrain.rewards")


def is_batched(fn: Any) -> bool:
    """A batched scorer takes ``responses`` (plural) or is named ``score_batch``."""
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False
    return getattr(fn, "__name__", "").endswith("_batch") or (bool(params) and params[0] == "responses")


def _as_float(value: Any) -> float:
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"reward {value!r} is not finite")
    return out


class CustomReward:
    """Your function: score(response, reference) -> float, or score_batch(responses, references) -> list[float]."""

    config_section = "reward"

    def __init__(self, function: str = "", timeout: float = 5.0, workers: int = 2) -> None:
        if not function:
            raise ConfigError('[reward] type = "custom" needs [reward] function = "module.score" '
                              "(a function score(response, reference) -> float).")
        where = "[reward] function"
        self.fn = load_dotted(function, where)
        if not callable(self.fn):
            raise ConfigError(f'{where} = "{function}": not a function.')
        self.batched = is_batched(self.fn)
        module, _, attr = function.rpartition(".") if ":" not in function else function.rpartition(":")
        if module.endswith(".py") or "/" in module:  # a file: load_dotted imported it under its stem
            module = self.fn.__module__
        self.path = f"{module}:{attr}"
        self.pool = None if self.batched else WorkerPool(workers, timeout)

    def score(self, responses: list[str], references: list[str]) -> RewardResult:
        if len(responses) != len(references):
            raise ValueError(f"{len(responses)} responses but {len(references)} references")
        if self.batched:
            try:
                values = [_as_float(v) for v in self.fn(list(responses), list(references))]
                if len(values) != len(responses):
                    raise ValueError(f"returned {len(values)} rewards for {len(responses)} responses")
                return RewardResult(values)
            except Exception as e:
                log.warning("reward function %s failed on a batch of %d: %s: %s", self.path, len(responses),
                            type(e).__name__, e)
                return RewardResult([0.0] * len(responses), errors=len(responses))
        assert self.pool is not None
        result = RewardResult([0.0] * len(responses))
        outcomes = self.pool.run(self.path, list(zip(responses, references, strict=True)))
        for i, outcome in enumerate(outcomes):
            if outcome.status == "ok":
                try:
                    result.rewards[i] = _as_float(outcome.value)
                except (TypeError, ValueError):
                    result.errors += 1
            elif outcome.status == "timeout":
                result.timeouts += 1
            else:
                result.errors += 1
        return result

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
