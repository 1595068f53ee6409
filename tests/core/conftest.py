"""Fixtures for tests/core: fixture plugin packages installed for real, config writers.

The shared setup (threads, offline) is tests/conftest.py; helpers live in cli_helpers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import FIXTURES, pip, pip_install

@pytest.fixture(scope="session")
def fixture_plugin():
    """tests/fixtures/plugin_pkg installed for real into this environment (uninstalled at the end).

    A regular (not editable) install, so that this very process can import it too.
    """
    pip_install(str(FIXTURES / "plugin_pkg"))
    yield "retrain-fixture-plugin"
    pip("uninstall", "-y", "retrain-fixture-plugin")


@pytest.fixture(scope="session")
def broken_plugin(tmp_path_factory) -> Path:
    """tests/fixtures/broken_plugin_pkg installed with ``pip --target`` into a folder that only the
    subprocesses given ``extra_path=`` see, so other test runs never meet the broken plugin."""
    target = tmp_path_factory.mktemp("broken_site")
    pip_install("--target", str(target), str(FIXTURES / "broken_plugin_pkg"))
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
