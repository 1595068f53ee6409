"""Optional protocol members are read with their declared defaults; the one-process shard plan is the identity."""

from __future__ import annotations

import pytest
from retrain.protocols import Backend, Engine, Environment, RewardResult, ShardPlan, optional
from retrain.train.shards import OneProcess
from retrain.types import Generation, Rollouts, Task


class Bare:
    pass


class Shares:
    shares_weights = True

    def rollout_metrics(self) -> dict[str, float]:
        return {"env/turns": 3.0}


def test_optional_members_fall_back_to_the_protocols_defaults():
    assert optional(Bare(), Engine, "shares_weights") is False
    assert optional(Bare(), Engine, "step_metrics")() == {}
    assert optional(Bare(), Environment, "rollout") is None and optional(Bare(), Environment, "reward") is None
    assert optional(Bare(), Environment, "rollout_metrics")() == {}
    assert optional(Bare(), Backend, "model") is None
    assert optional(Shares(), Engine, "shares_weights") is True
    assert optional(Shares(), Environment, "rollout_metrics")() == {"env/turns": 3.0}


def test_an_undeclared_member_is_an_error_not_a_silent_default():
    with pytest.raises(AttributeError, match="Engine.sharesweights is not an optional member declared"):
        optional(Shares(), Engine, "sharesweights")


def test_the_one_process_plan_changes_nothing():
    import torch

    plan: ShardPlan = OneProcess()
    gen = Generation(completion_ids=[[5, 6], [7], [8, 9, 10], [11]], logprobs=[[-1.0, -1.0], [-1.0], [-1.0] * 3, [-1.0]],
                     finish_reasons=["stop"] * 4, texts=["ab", "c", "def", "g"], policy_version=0)
    rollouts = Rollouts.from_generation([Task("p1", "a"), Task("p2", "b")], [[1], [2]], gen, 2)  # [4, 3]
    token_adv = torch.ones_like(rollouts.mask)  # [N, T]

    class Half:
        def score(self, responses, references):
            return RewardResult([0.5] * len(responses))

    assert plan.is_main and plan.processes == 1 and plan.row_offset(8) is None
    assert plan.share(list(rollouts.tasks)) == list(rollouts.tasks)
    mine, adv = plan.rows(rollouts, token_adv)
    assert mine is rollouts and adv is token_adv
    assert plan.score(Half(), rollouts).rewards == [0.5] * rollouts.n
    assert plan.agree(True) and not plan.agree(False)
