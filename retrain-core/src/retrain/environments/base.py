"""Shared pieces of the built-in environments: a seeded cursor over a fixed task list, hold-outs."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from retrain.errors import ConfigError
from retrain.types import Task


def stable_hash(text: str) -> int:
    """A hash that does not change between processes (unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def config_value(ctx: Any, section: str, key: str, default: Any) -> Any:
    config = getattr(ctx, "config", None)
    return getattr(getattr(config, section, None), key, default) if config is not None else default


def hold_out(tasks: list[Task], n: int, seed: int = 0) -> tuple[list[Task], list[Task]]:
    """Split one task list into (train, held-out): the held-out part is ``n`` tasks (at most half)
    chosen by a fixed shuffle, so it does not depend on the training seed."""
    order = sorted(range(len(tasks)), key=lambda i: stable_hash(f"{seed}/{tasks[i].id or tasks[i].prompt}"))
    k = min(n, len(tasks) // 2)
    held = set(order[:k])
    return [t for i, t in enumerate(tasks) if i not in held], [tasks[i] for i in order[:k]]


class ListEnvironment:
    """Training tasks in a seeded order that reshuffles every epoch; a fixed held-out list.

    The cursor (epoch, position) is the whole state, so a resumed run sees the same tasks next.
    """

    def __init__(self, train: list[Task], held_out: list[Task], seed: int = 0, label: str = "environment") -> None:
        if not train:
            raise ConfigError(f"{label}: no training tasks (check [data] path, subjects and levels).")
        train_ids = {t.id for t in train}
        overlap = [t.id for t in held_out if t.id in train_ids]
        if overlap:  # a guard: held-out tasks must never be trained on
            raise ConfigError(f"{label}: {len(overlap)} held-out tasks also appear in training, e.g. {overlap[0]}.")
        self.train = train
        self.held_out = held_out
        self.seed = seed
        self.label = label
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.train)))
        random.Random(f"{self.seed}/epoch/{epoch}").shuffle(order)
        return order

    def sample(self, batch_size: int) -> list[Task]:
        out = []
        for _ in range(batch_size):
            if self.position >= len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._permutation(self.epoch)
            out.append(self.train[self._order[self.position]])
            self.position += 1
        return out

    def eval_tasks(self, n: int) -> list[Task]:
        if n > len(self.held_out):
            raise ConfigError(f"{self.label}: [eval] num_problems = {n}, but only {len(self.held_out)} held-out "
                              "tasks exist. Lower num_problems or provide a larger test split.")
        return self.held_out[:n]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)
