"""Entry point of retrain-verifiers: registers the ``verifiers`` environment (no verifiers import here)."""

from __future__ import annotations

from retrain import hookimpl


@hookimpl
def retrain_register_environments(register):
    from retrain_verifiers.environment import VerifiersEnvironment

    register("verifiers", VerifiersEnvironment)
