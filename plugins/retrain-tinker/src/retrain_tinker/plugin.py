"""Entry point of retrain-tinker: the ``tinker`` backend and engine, and `retrain tinker serve`.

Nothing heavy is imported here: the SDK, torch and the stand-in load when a component is built.
"""

from __future__ import annotations

from retrain import hookimpl

from retrain_tinker.options import tinker_backend, tinker_engine


@hookimpl
def retrain_register_backends(register):  # noqa: ANN001,ANN201
    register("tinker", tinker_backend)


@hookimpl
def retrain_register_engines(register):  # noqa: ANN001,ANN201
    register("tinker", tinker_engine)


def tinker_command():  # noqa: ANN201
    """Tinker tools: a local Tinker-compatible service (retrain tinker serve --model DIR)."""
    from retrain_tinker.cli import app

    return app


@hookimpl
def retrain_register_commands(register):  # noqa: ANN001,ANN201
    register("tinker", tinker_command)
