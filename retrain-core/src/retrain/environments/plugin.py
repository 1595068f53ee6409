"""Registers the built-in environments (task sources, selected by ``[data] source``)."""

from __future__ import annotations

from retrain import hookimpl


@hookimpl
def retrain_register_environments(register):  # type: ignore[no-untyped-def]
    from retrain.environments.hf import HFEnvironment
    from retrain.environments.jsonl import JsonlEnvironment
    from retrain.environments.math_data import MathEnvironment
    from retrain.environments.reasoning_gym_env import ReasoningGymEnvironment
    from retrain.environments.synthetic import SyntheticEnvironment

    register("synthetic", SyntheticEnvironment)
    register("math", MathEnvironment)
    register("jsonl", JsonlEnvironment)
    register("reasoning_gym", ReasoningGymEnvironment)
    register("hf", HFEnvironment)
