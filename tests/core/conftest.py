"""Fixtures for tests/core: fixture plugin packages installed for real (into temporary ``pip
--target`` folders, never into this environment), config writers.

The shared setup (threads, offline) is the repository's conftest.py; helpers live in cli_helpers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import FIXTURES
from retrain.testing.packages import install_target


@pytest.fixture(scope="session")
def fixture_plugin(tmp_path_factory) -> Path:
    """tests/fixtures/plugin_pkg installed with ``pip --target`` into a folder that the subprocesses
    given ``extra_path=`` see (its entry points included)."""
    return install_target(tmp_path_factory.mktemp("fixture_site"), str(FIXTURES / "plugin_pkg"))


@pytest.fixture(scope="session")
def broken_plugin(tmp_path_factory) -> Path:
    """tests/fixtures/broken_plugin_pkg installed with ``pip --target`` into a folder that only the
    subprocesses given ``extra_path=`` see, so other test runs never meet the broken plugin."""
    return install_target(tmp_path_factory.mktemp("broken_site"), str(FIXTURES / "broken_plugin_pkg"))


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
