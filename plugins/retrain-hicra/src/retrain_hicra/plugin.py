"""Entry point of retrain-hicra: registers the gtpo_hicra transform, the mined-grams detector and `retrain hicra`."""

from __future__ import annotations

from retrain import hookimpl
from retrain_hicra.detector import MinedGramDetector
from retrain_hicra.transform import make_gtpo_hicra


@hookimpl
def retrain_register_transforms(register):
    register("gtpo_hicra", make_gtpo_hicra)


@hookimpl
def retrain_register_planning_detectors(register):
    register("mined-grams", MinedGramDetector)


def hicra_command():
    """HICRA tools: mine planning phrases from a run's samples (retrain hicra mine RUN_DIR)."""
    from retrain_hicra.cli import app

    return app


@hookimpl
def retrain_register_commands(register):
    register("hicra", hicra_command)
