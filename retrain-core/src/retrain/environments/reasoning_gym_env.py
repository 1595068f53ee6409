"""``reasoning_gym``: procedural tasks from the optional `reasoning-gym` package (``[data] name``).

Training items come from ``create_dataset(name, seed=<training seed>)`` and held-out items from a
fixed, different seed; held-out questions are skipped in training.
"""

from __future__ import annotations

from typing import Any

from retrain.environments.base import config_value
from retrain.errors import ConfigError
from retrain.types import Task

EVAL_SEED = 987_654_321
SIZE = 1_000_000


class ReasoningGymEnvironment:
    """Procedural tasks from reasoning-gym ([data] name = "basic_arithmetic", ...); optional extra."""

    config_section = "data"

    def __init__(self, ctx: Any = None, name: str = "") -> None:
        try:
            import reasoning_gym
        except ImportError:
            raise ConfigError('[data] source = "reasoning_gym" needs the reasoning-gym package: '
                              "pip install reasoning-gym") from None
        if not name:
            raise ConfigError('[data] source = "reasoning_gym" needs [data] name, e.g. name = "basic_arithmetic".')
        seed = int(config_value(ctx, "training", "seed", 0))
        try:
            self.train = reasoning_gym.create_dataset(name, size=SIZE, seed=seed)
            self.test = reasoning_gym.create_dataset(name, size=SIZE, seed=EVAL_SEED)
        except Exception as e:
            raise ConfigError(f'[data] name = "{name}": reasoning-gym cannot create it ({type(e).__name__}: {e}).') from None
        self.name = name
        self.cursor = 0
        self._held_out: list[Task] = []
        self._held_questions: set[str] = set()
        self.eval_tasks(int(config_value(ctx, "eval", "num_problems", 64)))  # known before any training sample

    def _task(self, dataset: Any, index: int, split: str) -> Task:
        item = dataset[index]
        return Task(item["question"], str(item["answer"]), f"reasoning_gym/{self.name}/{split}/{index}",
                    {"subject": self.name, **{k: v for k, v in item.get("metadata", {}).items()
                                              if isinstance(v, (str, int, float, bool))}})

    def eval_tasks(self, n: int) -> list[Task]:
        while len(self._held_out) < n:
            task = self._task(self.test, len(self._held_out), "test")
            self._held_out.append(task)
            self._held_questions.add(task.prompt)  # type: ignore[arg-type]
        return self._held_out[:n]

    def sample(self, batch_size: int) -> list[Task]:
        out: list[Task] = []
        while len(out) < batch_size:
            task = self._task(self.train, self.cursor % SIZE, "train")
            self.cursor += 1
            if task.prompt not in self._held_questions:
                out.append(task)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor = int(state["cursor"])
