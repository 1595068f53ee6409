"""Registers the built-in rewards."""

from __future__ import annotations

from retrain import hookimpl


@hookimpl
def retrain_register_rewards(register):  # type: ignore[no-untyped-def]
    from retrain.rewards.basic import MatchReward, MathReward
    from retrain.rewards.combo import ComboReward
    from retrain.rewards.custom import CustomReward
    from retrain.rewards.judge import JudgeReward

    register("match", MatchReward)
    register("math", MathReward)
    register("judge", JudgeReward)
    register("custom", CustomReward)
    register("combo", ComboReward)
