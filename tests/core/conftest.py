"""CLI and plugin-package helpers for tests/core (the shared setup is tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True,
                   capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def fixture_plugin():
    """tests/fixtures/plugin_pkg installed for real into this environment (uninstalled at the end).

    A regular (not editable) install, so that this very process can import it too.
    """
    _pip("install", "--no-deps", "--no-build-isolation", str(FIXTURES / "plugin_pkg"))
    yield "retrain-fixture-plugin"
    _pip("uninstall", "-y", "retrain-fixture-plugin")


@pytest.fixture(scope="session")
def broken_plugin(tmp_path_factory) -> Path:
    """tests/fixtures/broken_plugin_pkg installed with ``pip --target`` into a folder that only the
    subprocesses given ``extra_path=`` see, so other test runs never meet the broken plugin."""
    target = tmp_path_factory.mktemp("broken_site")
    _pip("install", "--no-deps", "--no-build-isolation", "--target", str(target), str(FIXTURES / "broken_plugin_pkg"))
    return target


FIXTURE_SELECTION = """
[backend]
backend = "fixture_backend"

[inference]
engine = "fixture_engine"

[reward]
type = "fixture_reward"

[data]
source = "fixture_env"

[logging]
loggers = ["fixture_log"]
"""


@pytest.fixture
def write_config(tmp_path):
    """Write a config that selects the fixture plugin's components plus ``body``."""

    def write(body: str = "", name: str = "run.toml", selection: str = FIXTURE_SELECTION) -> Path:
        path = tmp_path / name
        path.write_text(selection + "\n" + body)
        return path

    return write
