"""Helpers of the reliability suite: a toy run config, the real CLI, one-line errors, metrics rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

RETRAIN = Path(sys.executable).with_name("retrain")  # the console script of this environment


def toy_config(path: Path, model: Path, log_dir: Path, *, steps: int, lora_rank: int = 0, name: str = "run",
               save_every: int = 1, extra: str = "") -> Path:
    """A config for a few CPU steps of the tiny model on the copy-digit task (seconds per step)."""
    path.write_text(textwrap.dedent(f"""
        [model]
        model = "{model}"
        lora_rank = {lora_rank}
        [algorithm]
        advantage_mode = "grpo"
        [training]
        max_steps = {steps}
        batch_size = 2
        group_size = 4
        max_tokens = 6
        lr = 1e-2
        save_every = {save_every}
        keep_checkpoints = 2
        [data]
        source = "retrain.testing.toy.CopyDigitEnv"
        prompt_template = "{{problem}}"
        [reward]
        type = "retrain.testing.toy.FirstCharReward"
        [logging]
        log_dir = "{log_dir}"
        run_name = "{name}"
        loggers = ["jsonl"]
        [eval]
        at_start = false
        at_end = false
    """) + extra)
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RETRAIN_STRICT_PLUGINS", "PYTHONPATH")}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb", OMP_NUM_THREADS="1", **extra)
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    """The real ``retrain`` console script."""
    return subprocess.run([str(RETRAIN), *args], cwd=cwd, env=cli_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line of a user error (exit 2, no traceback)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def metric_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
