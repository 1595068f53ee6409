"""``synthetic``: an endless, seeded stream of MATH-format problems with exact answers (sympy).

Train and held-out problems never overlap, by construction: a problem belongs to the held-out
side when the hash of its text falls in bucket 0 of ``EVAL_BUCKETS`` (1 in 8), and the training
stream skips those; the two sides are also drawn from different seed streams. The held-out list
does not depend on the training seed, so runs with different seeds are evaluated on the same
problems. ``[data] levels`` (1-5) and ``subjects`` (generator kinds: arithmetic, expression,
word, linear, fraction, radical, quadratic) select what is generated.
"""

from __future__ import annotations

import random
from typing import Any

from retrain.environments.base import config_value, stable_hash
from retrain.environments.generators import GENERATORS
from retrain.errors import ConfigError, did_you_mean
from retrain.types import Task

EVAL_BUCKETS = 8
EVAL_SEED = "retrain-synthetic-eval"


def is_held_out(problem: str) -> bool:
    return stable_hash(problem) % EVAL_BUCKETS == 0


class SyntheticEnvironment:
    """Built-in MATH-format problems (levels 1-5) with sympy-exact answers; disjoint train/eval streams."""

    config_section = "data"

    def __init__(self, ctx: Any = None, levels: list[int] | None = None, subjects: list[str] | None = None) -> None:
        levels = list(levels or [])
        subjects = list(subjects or [])
        for level in levels:
            if level not in range(1, 6):
                raise ConfigError(f"[data] levels = {levels}: the synthetic source has levels 1-5.")
        for kind in subjects:
            if kind not in GENERATORS:
                raise ConfigError(f'[data] subjects: "{kind}" is not a synthetic problem kind.'
                                  + did_you_mean(kind, GENERATORS) + f" Kinds: {', '.join(GENERATORS)}.")
        self.kinds = [k for k, (lvl, _) in GENERATORS.items()
                      if (not levels or lvl in levels) and (not subjects or k in subjects)]
        if not self.kinds:
            raise ConfigError(f"[data] levels = {levels} and subjects = {subjects} select no synthetic problem kind.")
        self.seed = int(config_value(ctx, "training", "seed", 0))
        self.cursor = 0  # index into the training stream
        self._held_out: list[Task] = []  # grows on demand; always the same prefix
        self._eval_index = 0

    def _generate(self, stream: str, index: int) -> Task:
        rng = random.Random(f"{stream}/{index}")
        kind = rng.choice(self.kinds)
        level, generator = GENERATORS[kind]
        problem, answer, meta = generator(rng)
        task_id = f"synthetic/{kind}/{stable_hash(problem):016x}"
        return Task(problem, answer, task_id, {"level": level, "subject": kind, **meta})

    def sample(self, batch_size: int) -> list[Task]:
        out: list[Task] = []
        while len(out) < batch_size:
            task = self._generate(f"{self.seed}/train", self.cursor)
            self.cursor += 1
            if not is_held_out(task.prompt):  # type: ignore[arg-type]
                out.append(task)
        return out

    def eval_tasks(self, n: int) -> list[Task]:
        seen = {t.prompt for t in self._held_out}
        attempts = 0
        while len(self._held_out) < n:
            task = self._generate(EVAL_SEED, self._eval_index)
            self._eval_index += 1
            attempts += 1
            if attempts > 200 * max(n, 1) + 10_000:
                raise ConfigError(f"synthetic: only {len(self._held_out)} distinct held-out problems exist for kinds "
                                  f"{self.kinds}; lower [eval] num_problems.")
            if is_held_out(task.prompt) and task.prompt not in seen:  # type: ignore[arg-type]
                seen.add(task.prompt)
                self._held_out.append(task)
        return self._held_out[:n]

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor = int(state["cursor"])
