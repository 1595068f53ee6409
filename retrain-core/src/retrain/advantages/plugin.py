"""Built-in advantages, transforms and the strategic-gram planning detector (registered as builtin.advantages)."""

from __future__ import annotations

from retrain import hookimpl
from retrain.advantages.episode import GRPO, DrGRPO, MaxRL
from retrain.advantages.planning import StrategicGramDetector
from retrain.advantages.transforms import make_gtpo, make_gtpo_sepa, make_none


@hookimpl
def retrain_register_advantages(register):
    register("grpo", GRPO)
    register("dr_grpo", DrGRPO)
    register("maxrl", MaxRL)


@hookimpl
def retrain_register_transforms(register):
    register("none", make_none)
    register("gtpo", make_gtpo)
    register("gtpo_sepa", make_gtpo_sepa)


@hookimpl
def retrain_register_planning_detectors(register):
    register("strategic-grams", StrategicGramDetector)
