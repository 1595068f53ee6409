"""`retrain hicra ...`: HICRA tools (mine planning phrases from a run)."""

from __future__ import annotations

from pathlib import Path

import typer

from retrain.errors import RetrainError

app = typer.Typer(help="HICRA tools: mine planning phrases from a run's samples.", no_args_is_help=True,
                  add_completion=False)


@app.callback()
def hicra() -> None:
    """HICRA tools: mine planning phrases from a run's samples."""


@app.command("mine")
def mine_command(
    run_dir: Path = typer.Argument(..., help="A run directory (with samples.jsonl) or a samples.jsonl file."),
    out: Path = typer.Option(None, "--out", "-o", help="Phrases file to write (default RUN_DIR/planning_phrases.txt)."),
    min_n: int = typer.Option(2, help="Shortest n-gram (words)."),
    max_n: int = typer.Option(4, help="Longest n-gram (words)."),
    min_count: int = typer.Option(3, help="Keep n-grams found in at least this many correct completions."),
    min_z: float = typer.Option(1.96, help="Keep n-grams whose log-odds z-score is at least this."),
    prior: float = typer.Option(0.5, help="Add-alpha smoothing of the counts."),
    top_k: int = typer.Option(50, help="Keep at most this many phrases."),
    correct_threshold: float = typer.Option(0.5, help="A completion is correct when its reward is >= this."),
    last_steps: int = typer.Option(0, help="Use only the samples of the last K steps (0 = all)."),
) -> None:
    """Find n-grams over-represented in correct vs incorrect completions; write a phrases file for the planning detector."""
    from retrain_hicra.mine import mine, read_samples, write_phrases

    samples_path = run_dir if run_dir.is_file() else run_dir / "samples.jsonl"
    if not samples_path.is_file():
        raise RetrainError(f"{samples_path}: no such file. Pass a run directory written by `retrain RUN.toml` "
                           "(with [logging] samples_every > 0) or a samples.jsonl file.")
    if not 1 <= min_n <= max_n:
        raise RetrainError(f"--min-n {min_n} --max-n {max_n}: need 1 <= min-n <= max-n.")
    samples = read_samples(samples_path, last_steps)
    n_correct = sum(r >= correct_threshold for _, r in samples)
    n_incorrect = len(samples) - n_correct
    if n_correct == 0 or n_incorrect == 0:
        raise RetrainError(f"{samples_path}: {n_correct} correct and {n_incorrect} incorrect completions; mining "
                           "needs both. Train longer or change --correct-threshold.")
    grams = mine(samples, min_n=min_n, max_n=max_n, min_count=min_count, prior=prior, min_z=min_z, top_k=top_k,
                 correct_threshold=correct_threshold)
    target = out or (samples_path.parent / "planning_phrases.txt")
    write_phrases(target, grams, str(samples_path), n_correct, n_incorrect)
    typer.echo(f"{len(grams)} phrases from {len(samples)} completions ({n_correct} correct) -> {target}")
    for g in grams[:10]:
        typer.echo(f"  {g.z:6.2f}  {g.phrase}  ({g.correct} correct, {g.incorrect} incorrect)")
    if not grams:
        typer.echo("No phrase passed the thresholds; try --min-count 2 or --min-z 1.")
