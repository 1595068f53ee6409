"""verifiers test setup: the fixture environments under tests/fixtures/verifiers_envs are built as
wheels and pip-installed for real into this interpreter for the session (uninstalled after)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "verifiers_envs"
INSTALLED = ["retrain-vf-letters", "retrain-vf-guess"]  # installed by the fixture
AUTO_INSTALLED = ["retrain-vf-evalonly"]  # left for `auto_install = true` to install


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/verifiers" in str(item.fspath):
            item.add_marker(pytest.mark.verifiers)


def _pip(*args: str, env: dict | None = None) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed: {proc.stderr[-2000:]}")


@pytest.fixture(scope="session")
def vf_envs(tmp_path_factory):
    """Wheels of the fixture environments; letters + guess installed, evalonly only built."""
    pytest.importorskip("verifiers.v1", reason="verifiers 0.4 is not installed (pip install 'verifiers>=0.4,<0.5')")
    wheels = tmp_path_factory.mktemp("vf_wheels")
    for name in INSTALLED + AUTO_INSTALLED:
        _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(FIXTURES / name))
    _pip("uninstall", "-y", *AUTO_INSTALLED)
    _pip("install", "--no-deps", "--no-index", "--find-links", str(wheels), *INSTALLED)
    yield wheels
    _pip("uninstall", "-y", *INSTALLED, *AUTO_INSTALLED)


@pytest.fixture(scope="session")
def vf_model(tmp_path_factory):
    """The tiny test model (random-init Llama, char tokenizer with ChatML template)."""
    pytest.importorskip("torch")
    from retrain.testing import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("vf_tiny"))
