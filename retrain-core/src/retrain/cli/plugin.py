"""Built-in commands registered through the plugin hooks, like a plugin's (shows as ``builtin.cli``)."""

from __future__ import annotations

from typing import Any

from retrain import hookimpl


def eval_command() -> Any:
    """Evaluate a run's model (or a checkpoint) on its held-out problems: pass@1 (greedy) and pass@k."""
    from retrain.cli.eval_cmd import make_eval_app

    return make_eval_app()


@hookimpl
def retrain_register_commands(register):  # type: ignore[no-untyped-def]
    register("eval", eval_command)
