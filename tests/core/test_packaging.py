"""Packaging: version bounds match docs/install.md, LICENSE and README in every package, and the
conflicting PyPI `retrain` distribution is refused in one line."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "retrain-core", *sorted((ROOT / "plugins").glob("retrain-*"))]


def test_the_other_retrain_distribution_is_refused_in_one_line(tmp_path):
    # What `pip install retrain` (0.3.0, a different project) leaves in site-packages, as metadata.
    info = tmp_path / "retrain-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.4\nName: retrain\nVersion: 0.3.0\n")
    import os

    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    code = "from retrain.cli.main import main; main(['help'])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith('error: the PyPI package "retrain" 0.3.0')
    assert "pip uninstall -y retrain" in done.stderr and "Traceback" not in done.stderr
    elsewhere = tmp_path / "elsewhere"  # `python -c` puts the working directory on sys.path
    elsewhere.mkdir()
    clean = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere)
    assert clean.returncode == 0, clean.stderr  # without it, the same command works


def _pyproject_requirements() -> set[tuple[str, str]]:
    """(package or package[extra], requirement) for every dependency of every package."""
    out = set()
    for folder in PACKAGES:
        project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
        out |= {(project["name"], req) for req in project.get("dependencies", [])}
        for extra, reqs in project.get("optional-dependencies", {}).items():
            out |= {(f"{project['name']}[{extra}]", req) for req in reqs if not req.startswith(project["name"])}
    return out


def _documented_requirements() -> set[tuple[str, str]]:
    text = (ROOT / "docs" / "install.md").read_text()
    table = text[text.index("<!-- bounds:"):]
    rows = re.findall(r"^\| (\S+) \| `([^`]+)` \|", table, flags=re.M)
    return set(rows)


def test_docs_install_lists_exactly_the_bounds_of_every_pyproject():
    assert _documented_requirements() == _pyproject_requirements()


def test_bounds_that_the_code_depends_on():
    reqs = dict((r.split(">=")[0], r) for _, r in _pyproject_requirements())
    assert reqs["torch"] == "torch>=2.6"  # torch.distributed.fsdp.fully_shard is public from 2.6
    assert reqs["transformers"] == "transformers>=4.56"  # from_pretrained(dtype=...)
    hicra = tomllib.loads((ROOT / "plugins" / "retrain-hicra" / "pyproject.toml").read_text())["project"]
    assert hicra["dependencies"][0].startswith("retrain-core[train]")


def test_installed_versions_satisfy_the_lower_bounds():
    import importlib.metadata as md

    from packaging.requirements import Requirement

    for _, text in _pyproject_requirements():
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            continue  # an optional extra that this environment does not install (vllm for GPUs)
        assert req.specifier.contains(version, prereleases=True), f"{req.name} {version} does not satisfy {text}"


def test_every_package_has_the_apache_license_and_a_real_readme():
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    for folder in PACKAGES:
        assert (folder / "LICENSE").read_text() == license_text, folder
        project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
        assert project["license"] == "Apache-2.0"
        readme = (folder / project["readme"]).read_text()
        assert "\\n" not in readme and readme.count("\n") >= 10, f"{folder.name}/README.md is not a real README"


def test_the_min_versions_script_runs_the_transformers_lower_bound():
    script = (ROOT / "scripts" / "test_min_versions.sh").read_text()
    bound = dict(r.split(">=") for _, r in _pyproject_requirements() if r.startswith("transformers>="))["transformers"]
    assert f'"transformers=={bound}.0"' in script and f'== "{bound}.0"' in script
