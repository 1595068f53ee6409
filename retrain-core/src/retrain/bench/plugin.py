"""Registers ``retrain bench`` (GRPO step benchmark; no torch at import).

No ``from __future__ import annotations``: Typer reads the ``typer.Context`` hint of the inner command.
"""

from retrain import hookimpl


def _bench():  # type: ignore[no-untyped-def]
    """Time a GRPO step (generation, training, phases, memory) and compare with TRL (docs/performance.md)."""
    import typer

    app = typer.Typer(add_completion=False, context_settings={"allow_extra_args": True,
                                                              "ignore_unknown_options": True})

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def bench(ctx: typer.Context) -> None:
        """Time a GRPO step; options as `python benchmarks/bench_grpo.py --help` (e.g. --steps 4 --peer PATH)."""
        from retrain.bench.grpo import main

        main(list(ctx.args))

    return app


@hookimpl
def retrain_register_commands(register):  # type: ignore[no-untyped-def]
    register("bench", _bench)
