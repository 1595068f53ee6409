"""A real third-party plugin package (tests/fixtures/run_plugin_pkg) driving real runs through the CLI.

The package is installed with ``pip install --target`` into a temporary folder that only the
subprocesses of these tests see (PYTHONPATH), never into this environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import FIXTURES, run_cli
from retrain.testing.packages import install_target
from retrain.testing.runs import read_jsonl, read_metrics, write_toy_config


@pytest.fixture(scope="module")
def run_plugin(tmp_path_factory) -> Path:
    return install_target(tmp_path_factory.mktemp("run_plugin_site"), str(FIXTURES / "run_plugin_pkg"))


def test_eval_command_builds_the_environment_provider_and_its_own_reward(run_plugin, tiny_model, tmp_path):
    """`retrain eval` takes the tasks from [environment] provider and scores them with that
    environment's reward, not with [reward] type (whose math check could never match "never-matched")."""
    config = write_toy_config(tmp_path / "run.toml", tiny_model, environment={"provider": "parity_env"},
                              data={"source": "synthetic"}, reward={"type": "math"},  # the defaults: not refused training={"max_tokens": 8},
                              eval={"num_problems": 6, "pass_k": 1})
    proc = run_cli("eval", str(config), cwd=tmp_path, extra_path=run_plugin, timeout=300, OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "runs" / "run-eval" / "eval" / "step_0.json").read_text())
    problems = report["problems"]
    assert [p["id"] for p in problems] == [f"parity-eval-{i}" for i in range(6)]
    assert [p["reward"] for p in problems] == [float(len(p["completion"]) % 2 == 0) for p in problems]
    assert any(p["correct"] for p in problems)  # parity (8 tokens: even unless a completion stops early), not math
    assert report["metrics"]["eval/pass@1"] == sum(p["correct"] for p in problems) / 6


def test_lifecycle_hooks_add_a_metric_stop_the_run_and_see_save_load_and_end(run_plugin, tiny_model, tmp_path):
    """Through the real CLI: the plugin's extra metric is logged, its stop request ends the run after
    step 2 (checkpoint saved, reason printed), and --resume continues; every hook sees what it should."""
    events = tmp_path / "events.jsonl"
    config = write_toy_config(tmp_path / "run.toml", tiny_model, training={"max_steps": 6, "max_tokens": 6, "lr": 1e-2,
                                                                           "save_every": 4},
                              eval={"at_start": True, "at_end": True, "every": 2, "num_problems": 2, "pass_k": 1},
                              runfix={"stop_after": 2, "events": str(events)})
    first = run_cli(str(config), cwd=tmp_path, extra_path=run_plugin, timeout=300, OMP_NUM_THREADS="1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "stop after step 2: runfix: stop_after = 2 reached (reward/mean " in first.stderr
    assert "stopped after step 2: checkpoint saved in" in first.stderr
    run_dir = tmp_path / "runs" / "run"
    logged = read_metrics(run_dir)
    assert [r["step"] for r in logged] == [0, 1, 2]  # eval at start, then two steps of six
    for r in logged[1:]:
        assert r["runfix/reward_x2"] == 2 * r["reward/mean"]
    assert "eval/pass@1" in logged[2] and "runfix/reward_x2" not in logged[0]  # step 0 is the evaluation only
    assert (run_dir / "checkpoints" / "step_2" / "state.pt").is_file()  # saved although save_every = 4
    seen = [(e["hook"], e["step"]) for e in read_jsonl(events)]
    assert seen == [("start_run", 0), ("after_eval", 0), ("after_step", 1), ("after_eval", 2), ("after_step", 2),
                    ("after_save", 2), ("end_run", 2)]
    by_hook = {e["hook"]: e for e in read_jsonl(events)}
    assert by_hook["end_run"]["status"] == "stopped" and by_hook["after_save"]["complete"] is True
    assert "eval/pass@1" in by_hook["after_step"]["keys"]  # after_step sees the step's evaluation

    events.unlink()
    second = run_cli(str(config), "--resume", "--set", "runfix.stop_after=0", "--set", "training.max_steps=3",
                     cwd=tmp_path, extra_path=run_plugin, timeout=300, OMP_NUM_THREADS="1")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "stop after step" not in second.stderr
    assert [r["step"] for r in read_metrics(run_dir)] == [0, 1, 2, 3]
    seen = [(e["hook"], e["step"]) for e in read_jsonl(events)]
    assert seen == [("after_load", 2), ("start_run", 2), ("after_eval", 3), ("after_step", 3), ("after_save", 3),
                    ("end_run", 3)]  # [eval] at_end: the last step is evaluated
    assert read_jsonl(events)[-1]["status"] == "completed"
    assert read_jsonl(events)[0]["path"] == str(run_dir / "checkpoints" / "step_2")
