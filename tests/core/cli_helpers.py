"""Helpers for the CLI tests: run the real console script with fixture plugin folders on its path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RETRAIN = Path(sys.executable).with_name("retrain")  # the console script of this environment


def cli_env(extra_path: Path | list[Path] | None = None, **env: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("RETRAIN_STRICT_PLUGINS", "PYTHONPATH")}
    out.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    folders = [extra_path] if isinstance(extra_path, Path) else list(extra_path or [])
    if folders:
        out["PYTHONPATH"] = os.pathsep.join(str(f) for f in folders)
    out.update(env)
    return out


def run_cli(*args: str, cwd: Path | None = None, extra_path: Path | list[Path] | None = None,
            timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``retrain`` console script; ``extra_path`` (folders with installed fixture
    plugins) goes on PYTHONPATH."""
    return subprocess.run([str(RETRAIN), *args], cwd=cwd, env=cli_env(extra_path, **env), capture_output=True,
                          text=True, timeout=timeout)
