"""Helpers for the CLI tests: run the real console script, install fixture plugin packages."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RETRAIN = Path(sys.executable).with_name("retrain")  # the console script of this environment


def cli_env(extra_path: Path | None = None, **env: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("RETRAIN_STRICT_PLUGINS", "PYTHONPATH")}
    out.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    if extra_path is not None:
        out["PYTHONPATH"] = str(extra_path)
    out.update(env)
    return out


def run_cli(*args: str, cwd: Path | None = None, extra_path: Path | None = None, timeout: float = 120,
            **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``retrain`` console script; ``extra_path`` goes on PYTHONPATH."""
    return subprocess.run([str(RETRAIN), *args], cwd=cwd, env=cli_env(extra_path, **env), capture_output=True,
                          text=True, timeout=timeout)


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True,
                   capture_output=True, text=True, timeout=300)


def pip_install(*args: str) -> None:
    """``pip install --no-deps``, building with this environment's setuptools when it has one."""
    offline_build = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    pip("install", "--no-deps", *offline_build, *args)
