"""A single-turn verifiers 0.4 environment: "Reverse the word: stone" -> "enots".

The taskset has a ``split`` field, so retrain trains on split "train" and evaluates on "test"
(docs/verifiers.md). Reward: the share of positions where the reply matches the reversed word
(dense, so a small model can climb), 1.0 for an exact answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Literal

import verifiers.v1 as vf

WORDS = ("stone", "river", "apple", "cloud", "pearl", "tiger", "lemon", "chair", "bread", "flame", "grape", "house",
         "night", "ocean", "plant", "quiet", "radio", "sugar", "table", "voice", "water", "zebra", "light", "mouse")


class ReverseConfig(vf.TasksetConfig):
    num_tasks: int = 200
    split: Literal["train", "test"] = "train"


class ReverseData(vf.TaskData):
    answer: str


class ReverseTask(vf.Task[ReverseData, vf.State, vf.TaskConfig]):
    @vf.reward
    async def reversed_share(self, task: ReverseData, trace: vf.Trace) -> float:
        reply = trace.last_reply.strip().lower()
        target = task.answer
        if reply == target:
            return 1.0
        return sum(a == b for a, b in zip(reply, target)) / (2 * len(target))  # partial credit, below 0.5


class ReverseTaskset(vf.Taskset[ReverseTask, ReverseConfig]):
    def load(self) -> Iterator[ReverseTask]:
        words = list(WORDS)
        held_out = set(words[::4])  # a quarter of the words only ever appear in the test split
        pool = sorted(held_out) if self.config.split == "test" else [w for w in words if w not in held_out]
        rng = random.Random(self.config.split)
        for i in range(self.config.num_tasks):
            word = rng.choice(pool)
            yield ReverseTask(ReverseData(id=f"{self.config.split}-{i}", prompt=f"Reverse the word: {word}. "
                                          "Reply with the reversed word only.", answer=word[::-1]), self.config.task)


__all__ = ["ReverseTaskset"]
