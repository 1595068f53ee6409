"""Helpers of the reliability suite: the real CLI and its one-line errors (toy runs: retrain.testing.runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RETRAIN = Path(sys.executable).with_name("retrain")  # the console script of this environment


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
