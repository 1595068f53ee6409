"""`retrain plugins new NAME --kind KIND` writes a package whose contract tests pass as generated:
one package of each kind, installed with pip --target, tested in one pytest subprocess."""

from __future__ import annotations

import subprocess
import sys

from cli_helpers import run_cli
from retrain.plugins.scaffold import SCAFFOLD_KINDS
from retrain.testing.packages import install_target, path_env


def test_every_kind_generates_a_package_whose_tests_pass(tmp_path):
    folders = []
    for kind in SCAFFOLD_KINDS:
        name = f"my{kind[:3]}"
        result = run_cli("plugins", "new", name, "--kind", kind, "--dir", str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"wrote {tmp_path / ('retrain-' + name)}/ (retrain_{name}: plugin.py")
        folders.append(tmp_path / f"retrain-{name}")
    site = install_target(tmp_path / "site", *map(str, folders))
    listing = run_cli("plugins", "list", extra_path=site)
    for kind, folder in zip(SCAFFOLD_KINDS, folders):
        name = folder.name.removeprefix("retrain-")
        row = next(line for line in listing.stdout.splitlines() if line.startswith(f"{name} "))
        assert row.split()[:3] == [name, f"retrain-{name}", "0.1.0"] and row.endswith(f"{kind}: {name}")
    check = run_cli("plugins", "check", extra_path=site)
    assert check.returncode == 0 and check.stdout.endswith(" checked, 0 problems.\n"), check.stdout
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                            *(str(f / "tests") for f in folders)], cwd=tmp_path, env=path_env(site),
                           capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "17 passed" in tests.stdout  # 3 per kind, 2 for the backend


def test_bad_names_kinds_and_existing_folders_are_one_line(tmp_path):
    bad_kind = run_cli("plugins", "new", "x", "--kind", "logger", "--dir", str(tmp_path))
    assert (bad_kind.returncode, bad_kind.stderr) == (2, 'error: retrain plugins new: --kind "logger" has no template; '
                                                         "kinds: advantage, reward, environment, transform, engine, backend.\n")
    bad_name = run_cli("plugins", "new", "My Adv", "--kind", "advantage", "--dir", str(tmp_path))
    assert bad_name.returncode == 2 and bad_name.stderr.startswith('error: retrain plugins new: "My Adv" is not a plugin name')
    assert run_cli("plugins", "new", "twice", "--kind", "advantage", "--dir", str(tmp_path)).returncode == 0
    again = run_cli("plugins", "new", "twice", "--kind", "advantage", "--dir", str(tmp_path))
    assert again.stderr == f"error: retrain plugins new: {tmp_path / 'retrain-twice'} already exists; choose another name or folder.\n"
