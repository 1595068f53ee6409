"""`retrain plugins list` shows retrain-verifiers; listing imports neither verifiers nor torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("retrain_verifiers", reason="retrain-verifiers is not installed (pip install -e plugins/retrain-verifiers)")


def _retrain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from retrain.cli.main import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


def test_plugins_list_shows_the_verifiers_environment():
    proc = _retrain("plugins", "list")
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("verifiers "))
    assert row.split() == ["verifiers", "retrain-verifiers", "0.1.0", "environment:", "verifiers"]
    data = json.loads(_retrain("plugins", "list", "--json").stdout)
    plugins = data["plugins"] if isinstance(data, dict) else data
    info = next(p for p in plugins if p["name"] == "verifiers")
    comp = info["components"][0]
    assert (comp["kind"], comp["name"]) == ("environment", "verifiers")
    assert [o["name"] for o in comp["options"]] == ["provider", "id", "args", "auto_install", "max_turns"]


def test_loading_the_plugin_imports_no_verifiers_or_torch():
    code = ("import sys; from retrain.plugins import load_plugins; r = load_plugins(); "
            "assert 'verifiers' in r.names('environment'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('verifiers', 'torch', 'transformers')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
