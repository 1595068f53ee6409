"""Non-finite numbers stop a run (retrain.train.guards), through the real CLI, engine and backend: a
model whose weights are NaN stops at its first step; weights blown up by an update skip one step,
then stop; never exit 0 with loss nan. Transients and the bound: NonFiniteGuard unit tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from retrain.testing import read_metrics, write_toy_config
from retrain.train.guards import MAX_SKIPPED_STEPS, NonFiniteGuard


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory, tiny_model) -> Path:
    """The tiny model with every weight of its last layer's MLP set to NaN."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    path = tmp_path_factory.mktemp("nan_model")
    shutil.copytree(tiny_model, path, dirs_exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        model.model.layers[-1].mlp.down_proj.weight.fill_(float("nan"))
    model.save_pretrained(path)
    return path


def run_cli(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).with_name("retrain")), str(cfg)], capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def guard_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith(("warning: step", "error:"))]


def test_nan_weights_stop_the_run_at_the_first_step(tmp_path, nan_model):
    cfg = write_toy_config(tmp_path / "nan.toml", nan_model, tmp_path / "runs", run_name="nan",
                           training={"max_steps": 2, "group_size": 2})  # fewer steps than the skip bound
    proc = run_cli(cfg)
    assert proc.returncode == 2, proc.stderr  # never exit 0 having trained on nothing
    assert guard_lines(proc.stderr) == [
        "error: step 1: engine logprobs has 16 non-finite values (nan); loss is nan; gradient norm is nan; the first "
        "step of the run is non-finite, so the run stops. Check the model's weights, the engine, lr and "
        "max_grad_norm; checkpoints already written are kept."]
    assert read_metrics(tmp_path / "runs" / "nan") == []


def test_weights_blown_up_by_the_update_skip_once_then_stop(tmp_path, tiny_model):
    """lr 1e30: step 1 is finite and its update makes the weights overflow; step 2 is skipped (the
    previous step was finite), step 3 is non-finite again and stops the run."""
    (tmp_path / "parity.py").write_text("def score(response, reference):\n"
                                        "    return float(sum(map(ord, response)) % 2)\n")  # groups with signal
    cfg = write_toy_config(tmp_path / "blow.toml", tiny_model, tmp_path / "runs", run_name="blow",
                           training={"max_steps": 6, "group_size": 4, "lr": 1e30}, reward={"type": "parity.score"})
    proc = run_cli(cfg)
    assert proc.returncode == 2, proc.stderr
    lines = guard_lines(proc.stderr)
    assert len(lines) == 2, lines
    assert lines[0].startswith("warning: step 2: ") and lines[0].endswith(
        f"the update was skipped (1 of at most {MAX_SKIPPED_STEPS} skipped steps)")
    assert lines[1].startswith("error: step 3: ") and "the step before was non-finite too (steps 2, 3), so the run " \
        "stops." in lines[1]
    metrics = read_metrics(tmp_path / "runs" / "blow")
    assert [(m["step"], m["guard/skipped"], m["guard/skipped_steps"]) for m in metrics] == [(1, 0.0, 0.0), (2, 1.0, 1.0)]


def test_guard_skips_transients_and_bounds_them():
    from retrain.errors import NumericsError

    guard = NonFiniteGuard(max_skipped=2)
    nan = float("nan")
    assert guard.check(1, {"loss": 0.5, "gradient norm": 2.0}) is True
    assert guard.check(2, {"loss": float("inf"), "gradient norm": 2.0}) is False  # a transient: skipped
    assert guard.check(3, {"loss": 0.4}) is True
    assert guard.check(4, {"loss": 0.4, "gradient norm": nan}) is False
    assert guard.skipped == [2, 4]
    assert guard.check(5, {"loss": 0.3}) is True
    with pytest.raises(NumericsError, match=r"^step 6: gradient norm is nan; 3 steps were non-finite \(steps 2, 4, 6; "
                                            r"at most 2 may be skipped\), so the run stops\."):
        guard.check(6, {"loss": 0.1, "gradient norm": nan})


def test_two_non_finite_steps_in_a_row_stop_the_run():
    from retrain.errors import NumericsError

    guard = NonFiniteGuard()
    assert guard.check(1, {"loss": 0.5}) is True
    assert guard.check(2, {"loss": float("nan")}) is False
    with pytest.raises(NumericsError, match=r"^step 3: loss is nan; the step before was non-finite too \(steps 2, 3\)"):
        guard.check(3, {"loss": float("nan")})
