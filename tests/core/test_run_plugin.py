"""A real third-party plugin package (tests/fixtures/run_plugin_pkg) driving real runs through the CLI.

The package is installed with ``pip install --target`` into a temporary folder that only the
subprocesses of these tests see (PYTHONPATH), never into this environment.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from cli_helpers import FIXTURES, run_cli
from retrain.testing.packages import install_target


@pytest.fixture(scope="module")
def run_plugin(tmp_path_factory) -> Path:
    return install_target(tmp_path_factory.mktemp("run_plugin_site"), str(FIXTURES / "run_plugin_pkg"))


def write_run(folder: Path, model: Path, body: str) -> Path:
    path = folder / "run.toml"
    path.write_text(textwrap.dedent(f"""
        [model]
        model = "{model}"
        lora_rank = 0
        [backend]
        devices = "cpu"
        [logging]
        log_dir = "{folder / 'runs'}"
        run_name = "run"
        loggers = ["jsonl"]
    """) + textwrap.dedent(body))
    return path


def test_eval_command_builds_the_environment_provider_and_its_own_reward(run_plugin, tiny_model, tmp_path):
    """`retrain eval` takes the tasks from [environment] provider and scores them with that
    environment's reward, not with [reward] type (whose math check could never match "never-matched")."""
    config = write_run(tmp_path, tiny_model, """
        [environment]
        provider = "parity_env"
        [reward]
        type = "math"
        [training]
        max_tokens = 9
        [eval]
        num_problems = 6
        pass_k = 1
    """)
    proc = run_cli("eval", str(config), cwd=tmp_path, extra_path=run_plugin, timeout=300, OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "runs" / "run-eval" / "eval" / "step_0.json").read_text())
    problems = report["problems"]
    assert [p["id"] for p in problems] == [f"parity-eval-{i}" for i in range(6)]
    assert [p["reward"] for p in problems] == [float(len(p["completion"]) % 2 == 0) for p in problems]
    assert any(p["correct"] for p in problems)  # parity, not the math check: some completions score 1
    assert report["metrics"]["eval/pass@1"] == sum(p["correct"] for p in problems) / 6
