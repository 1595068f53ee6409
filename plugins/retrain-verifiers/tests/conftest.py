"""verifiers test setup: the fixture environments under fixtures/verifiers_envs are built as wheels
and installed with ``pip --target`` into a temporary folder (never into this environment) that this
process and the ``retrain`` subprocesses put on their path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "verifiers_envs"
INSTALLED = ["retrain-vf-letters", "retrain-vf-guess"]  # installed by the fixture
AUTO_INSTALLED = ["retrain-vf-evalonly"]  # left for `auto_install = true` to install


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.verifiers)


@dataclass(frozen=True)
class VfEnvs:
    wheels: Path  # wheels of all fixture environments (a --find-links folder for auto_install)
    site: Path  # the --target folder holding the installed ones


@pytest.fixture(scope="session")
def vf_envs(tmp_path_factory):
    """Wheels of the fixture environments; letters + guess installed into ``site``, evalonly only built."""
    pytest.importorskip("verifiers.v1", reason="verifiers 0.4 is not installed (pip install 'verifiers>=0.4,<0.5')")
    from retrain.testing.packages import install_target, on_sys_path, pip

    wheels = tmp_path_factory.mktemp("vf_wheels")
    for name in INSTALLED + AUTO_INSTALLED:
        pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(FIXTURES / name))
    site = install_target(tmp_path_factory.mktemp("vf_site"), "--no-index", "--find-links", str(wheels),
                          *INSTALLED)
    with on_sys_path(site):
        yield VfEnvs(wheels, site)


@pytest.fixture(scope="session")
def vf_model(tmp_path_factory):
    """The tiny test model (random-init Llama, char tokenizer with ChatML template)."""
    pytest.importorskip("torch")
    from retrain.testing import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("vf_tiny"))
