"""Typer apps for ``retrain squeeze``, ``retrain campaign`` and ``retrain plot``.

Heavy modules (torch, matplotlib) are imported inside the commands, so mounting these apps
costs nothing at ``retrain --help``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from retrain.errors import RetrainError

# A sub-app whose callback takes the arguments: ``retrain squeeze DIR --energy 0.9`` (options may
# follow the argument; there are no sub-commands).
_SINGLE = {"invoke_without_command": True, "add_completion": False, "no_args_is_help": True, "subcommand_metavar": "",
           "context_settings": {"allow_interspersed_args": True, "help_option_names": ["-h", "--help"]}}


def _one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RetrainError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def squeeze_app() -> typer.Typer:
    app = typer.Typer(help="LoRA-Squeeze: exact rank analysis and compression of a LoRA adapter.", **_SINGLE)

    @app.callback()
    @_one_line_errors
    def squeeze(
        adapter_dir: Annotated[Path, typer.Argument(help="A peft adapter folder, or a run directory (its newest adapter).")],
        energy: Annotated[float, typer.Option(help="Spectral energy to keep, averaged over layers.")] = 0.95,
        rank: Annotated[int | None, typer.Option(help="Rank to compress to (default: the recommendation).")] = None,
        out: Annotated[Path | None, typer.Option(help="Write the compressed adapter here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
    ) -> None:
        """Singular values of each layer's LoRA delta, the smallest rank keeping --energy, and an
        optional compressed adapter (--out)."""
        from retrain.campaign.rundir import find_adapter
        from retrain.squeeze import CONFIG, analyze, compress, format_report

        path = adapter_dir
        if not (path / CONFIG).is_file() and path.is_dir():
            path = find_adapter(path) or path
        if out is not None:
            report = compress(path, out, rank=rank, energy=energy)
        else:
            report = analyze(path, energy)
        if as_json:
            typer.echo(json.dumps(report.to_json(), indent=2))
            return
        typer.echo(format_report(report))
        if rank is not None and out is None:
            live = [ly for ly in report.layers if any(ly["sigma"])]
            kept = [sum(x * x for x in ly["sigma"][:rank]) / sum(x * x for x in ly["sigma"]) for ly in live]
            total = sum(sum(x * x for x in ly["sigma"]) for ly in live)
            lost = sum(sum(x * x for x in ly["sigma"][rank:]) for ly in live)
            mean = sum(kept) / len(kept) if kept else 1.0
            typer.echo(f"at rank {rank}: mean energy {mean:.4f}, overall relative Frobenius error "
                       f"{math.sqrt(lost / total) if total else 0.0:.4g} (add --out DIR to write it)")

    return app


def campaign_app() -> typer.Typer:
    app = typer.Typer(help="Campaigns: conditions x seeds from one TOML (run it with `retrain CAMPAIGN.toml`).", add_completion=False,
                      no_args_is_help=True)

    @app.command("status")
    @_one_line_errors
    def status(path: Annotated[Path, typer.Argument(help="Campaign directory (or a folder of run directories).")],
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Each run's condition, seed, steps done / total and state."""
        from retrain.campaign.summary import format_status, status_rows

        rows = status_rows(path)
        typer.echo(json.dumps(rows, indent=2) if as_json else format_status(rows))

    @app.command("summary")
    @_one_line_errors
    def summary(path: Annotated[Path, typer.Argument(help="Campaign directory (or a folder of run directories).")],
                metric: Annotated[list[str] | None, typer.Option("--metric", help="Metric(s) to summarise.")] = None,
                baseline: Annotated[str | None, typer.Option(
                    "--baseline", help="Condition the others are compared with, paired by seed (default: the first).")] = None,
                as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Final and best metrics per condition (mean ± std, 95% t-interval over seeds) and paired
        differences against a baseline condition."""
        from retrain.campaign.summary import format_summary, summarize

        result = summarize(path, metric or None, baseline)
        typer.echo(json.dumps(result, indent=2) if as_json else format_summary(result))

    @app.command("run")
    @_one_line_errors
    def run(config: Annotated[Path, typer.Argument(help="Campaign TOML.")],
            set_: Annotated[list[str] | None, typer.Option(
                "--set", help="section.key=value, applied to every run.")] = None
            ) -> None:
        """Run or resume a campaign (same as `retrain CONFIG` when its campaign section lists seeds or conditions)."""
        from retrain.campaign.runner import run_campaign

        raise typer.Exit(run_campaign(config, list(set_ or [])))

    return app


def plot_app() -> typer.Typer:
    app = typer.Typer(help="PNG plots of a run or a campaign: reward and eval accuracy curves.", **_SINGLE)

    @app.callback()
    @_one_line_errors
    def plot(path: Annotated[Path, typer.Argument(help="A run directory or a campaign directory.")],
             out: Annotated[Path | None, typer.Option(help="Output folder (default: PATH/plots).")] = None) -> None:
        """Reward and eval accuracy curves per condition, mean ± std bands over seeds."""
        from retrain.campaign.plots import plot_campaign

        written = plot_campaign(path, out)
        if not written:
            raise RetrainError(f"{path}: no reward/ or eval/ metrics in metrics.jsonl yet; nothing to plot.")
        for p in written:
            typer.echo(f"wrote {p}")

    return app
