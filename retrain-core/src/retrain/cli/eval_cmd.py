"""``retrain eval RUN.toml [--checkpoint latest|PATH]``: held-out evaluation without training.

Builds the run's parts exactly as training does (``retrain.train.parts.build_parts``: the same
backend, engine, ``[data] source`` or ``[environment] provider``, and the same reward — the
environment's own when it has one — so the same prompt and held-out tasks), optionally loads a
checkpoint's weights, runs :func:`retrain.evaluation.run_eval` and prints the metrics. The report goes to ``--out`` or, for
a checkpoint, ``<run dir>/eval/cli_step_<N>.json``; for the base model,
``<log_dir>/<run name>-eval/eval/step_0.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def evaluate_config(config: Path, overrides: dict[str, Any], checkpoint: str | None = None,
                    out: Path | None = None) -> tuple[dict[str, float], Path]:
    """(metrics, report path) for the run described by ``config`` (+ ``overrides``), at ``checkpoint``."""
    from retrain.evaluation import run_eval
    from retrain.run_config import load_run_config
    from retrain.train import checkpoint as ckpt_io
    from retrain.train import rundir
    from retrain.train.parts import build_parts, close_parts
    from retrain.train.runner import seed_everything
    from retrain.types import RunContext

    cfg, registry = load_run_config(config, overrides)
    seed_everything(cfg.training.seed)
    if checkpoint:
        run_dir, ckpt = rundir.resolve_run(cfg, config, checkpoint)
    else:
        run_dir, ckpt = Path(cfg.logging.log_dir) / f"{rundir.run_name(cfg, config)}-eval", None
    ctx = RunContext(config=cfg, registry=registry, config_path=config, run_dir=run_dir)
    parts = build_parts(ctx)
    try:
        step = 0
        if ckpt is not None:  # the weights only: data cursor and credit state do not matter for held-out tasks
            step = int(ckpt_io.load_checkpoint(ckpt, backend=parts.backend, environment=None, credit=None)["step"])
        report = out or (run_dir / "eval" / (f"cli_step_{step}.json" if ckpt is not None else "step_0.json"))
        parts.engine.sync(parts.backend, parts.backend.version)
        metrics = run_eval(ctx, parts, step, report_path=report)
    finally:
        close_parts(parts)
    return metrics, report


def make_eval_app() -> typer.Typer:
    """Evaluate a run's model (or a checkpoint) on its held-out problems: pass@1 (greedy) and pass@k."""
    app = typer.Typer(add_completion=False)

    @app.command()
    def eval(  # noqa: A001 - the command's name
        config: Annotated[Path, typer.Argument(help="The run's TOML file.", show_default=False)],
        checkpoint: Annotated[str | None, typer.Option(
            "--checkpoint", metavar="[latest|PATH]",
            help="A checkpoints/step_N folder, a run directory, or 'latest' (default: the base model).")] = None,
        num_problems: Annotated[int | None, typer.Option("--num-problems", help="Override [eval] num_problems.")] = None,
        pass_k: Annotated[int | None, typer.Option("--pass-k", help="Override [eval] pass_k.")] = None,
        set_: Annotated[list[str] | None, typer.Option(
            "--set", metavar="SECTION.KEY=VALUE", help="Override any key (repeatable).")] = None,
        out: Annotated[Path | None, typer.Option("--out", help="Where to write the JSON report.")] = None,
    ) -> None:
        """Evaluate a run's model (or a checkpoint) on its held-out problems: pass@1 (greedy) and pass@k."""
        from retrain.config import parse_set

        overrides = parse_set(list(set_ or []))
        if num_problems is not None:
            overrides["eval.num_problems"] = num_problems
        if pass_k is not None:
            overrides["eval.pass_k"] = pass_k
        metrics, report = evaluate_config(config, overrides, checkpoint, out)
        for name, value in metrics.items():
            typer.echo(f"{name:<22} {value:.4f}")
        typer.echo(f"report: {report}")

    return app
