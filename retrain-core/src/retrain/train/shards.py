"""The one-process shard plan: this process owns the whole batch, so every step of the plan is the identity.

``retrain.train.loop.train_step`` always goes through a :class:`retrain.protocols.ShardPlan`
(``parts.shards``); under torchrun ``retrain.distributed.run`` replaces this plan with
``retrain.distributed.step.StepShards`` (whole groups per rank, gathered rows and rewards).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from retrain.protocols import Reward, RewardResult
    from retrain.types import Generation, Rollouts, Task


class OneProcess:
    """A run in one process: all B tasks, all N rows, rewards scored here, nothing to gather."""

    is_main = True
    processes = 1

    def share(self, tasks: list[Task]) -> list[Task]:
        return tasks  # B tasks

    def row_offset(self, count: int) -> int | None:
        return None  # the engine's own seeded sampling (row-keyed sampling is for ranks)

    def gather_generation(self, prompt_ids: list[list[int]], gen: Generation) -> tuple[list[list[int]], Generation]:
        return prompt_ids, gen  # N rows already

    def score(self, reward: Reward, rollouts: Rollouts) -> RewardResult:
        return reward.score(rollouts.texts, rollouts.references)  # [N]

    def rows(self, rollouts: Rollouts, token_adv: torch.Tensor) -> tuple[Rollouts, torch.Tensor]:
        return rollouts, token_adv  # [N, T], [N, T]

    def agree(self, flag: bool) -> bool:
        return flag

    def __repr__(self) -> str:
        return "OneProcess()"

