"""The Tinker stand-in for the tests: `retrain tinker serve` as a real subprocess on 127.0.0.1.

One server per test session (the tiny model loads in seconds, peft's import takes most of the
start-up); stopped by its pid at the end. The SDK in the test process talks to it over HTTP.
"""

from __future__ import annotations

import pytest
from tinker_helpers import KEY, start_standin, stop

# No importorskip here: raised in a conftest it aborts the whole `pytest -q` session when the
# tinker SDK is missing. Each test module skips itself (pytest.importorskip("tinker")).


@pytest.fixture(scope="session")
def standin_with_state(tiny_model, tmp_path_factory):
    """(base URL, the folder where it keeps save_state checkpoints)."""
    state_dir = tmp_path_factory.mktemp("tinker_state")
    proc, url = start_standin(tiny_model, state_dir)
    yield url, state_dir
    stop(proc)


@pytest.fixture(scope="session")
def standin(standin_with_state):
    return standin_with_state[0]


@pytest.fixture
def tinker_key(monkeypatch):
    monkeypatch.setenv("TINKER_API_KEY", KEY)
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    return KEY
