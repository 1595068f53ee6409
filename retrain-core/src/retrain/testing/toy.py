"""Toy verifiable tasks for fast learning tests with tiny random-init models (no data, no model hub).

Select them by dotted path::

    [data]
    source = "retrain.testing.toy.CopyDigitEnv"
    prompt_template = "{problem}"
    [reward]
    type = "retrain.testing.toy.FirstCharReward"

``CopyDigitEnv``: the prompt is one digit, the reference is the same digit. ``FirstCharReward``
gives 1 when the completion starts with the reference, else 0: a random char-level model
(vocab ~100) scores ~1%, a model that learned the task scores 1.
"""

from __future__ import annotations

import random
from typing import Any

from retrain.protocols import RewardResult
from retrain.types import Task


class CopyDigitEnv:
    """Toy task: the prompt is a digit (shown `repeat` times); answer with that digit."""

    config_section = "data"

    def __init__(self, repeat: int = 8, ctx: Any = None) -> None:
        self.seed = ctx.config.training.seed if ctx is not None else 0
        self.repeat = repeat  # the digit is shown this many times: easier for a random-init model to attend to
        self.cursor = 0

    def _task(self, index: int, salt: str) -> Task:
        # every block of 10 consecutive tasks holds each digit once (balanced batches when B = 10)
        order = random.Random(f"{salt}:{self.seed}:{index // 10}").sample(range(10), 10)
        d = str(order[index % 10])
        return Task(prompt=d * self.repeat, answer=d, id=f"{salt}-{index}")

    def sample(self, batch_size: int) -> list[Task]:
        tasks = [self._task(self.cursor + i, "train") for i in range(batch_size)]
        self.cursor += batch_size
        return tasks

    def eval_tasks(self, n: int) -> list[Task]:
        return [Task(prompt=str(i % 10) * self.repeat, answer=str(i % 10), id=f"eval-{i}") for i in range(n)]

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor = int(state["cursor"])


class FirstCharReward:
    """Toy reward: 1 if the completion starts with the reference answer, else 0."""

    config_section = "reward"

    def __init__(self) -> None:
        pass

    def score(self, responses: list[str], references: list[str]) -> RewardResult:
        return RewardResult([1.0 if r.startswith(ref) and ref else 0.0 for r, ref in zip(responses, references, strict=True)])


class ExactMatchReward:
    """Toy reward: 1 if the stripped completion equals the reference answer, else 0."""

    config_section = "reward"

    def __init__(self) -> None:
        pass

    def score(self, responses: list[str], references: list[str]) -> RewardResult:
        return RewardResult([1.0 if r.strip() == ref.strip() else 0.0 for r, ref in zip(responses, references, strict=True)])


exact_match_reward = ExactMatchReward
