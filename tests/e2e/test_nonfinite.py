"""Non-finite numbers stop a run (retrain.train.guards): a model whose weights are NaN samples with
NaN logprobs through the real engine and backend; the run skips at most MAX_SKIPPED_STEPS steps,
then exits 2 with one line naming the step and the quantity, never exit 0 with loss nan."""

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


def test_nan_weights_stop_the_run_with_one_line(tmp_path, nan_model):
    steps = MAX_SKIPPED_STEPS + 3
    cfg = write_toy_config(tmp_path / "nan.toml", nan_model, tmp_path / "runs", run_name="nan",
                           training={"max_steps": steps, "group_size": 2})
    proc = subprocess.run([str(Path(sys.executable).with_name("retrain")), str(cfg)], capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith(("warning: step", "error:"))]
    assert lines[:MAX_SKIPPED_STEPS] == [
        f"warning: step {s}: engine logprobs has 16 non-finite values (nan); loss is nan; gradient norm is nan; "
        f"the update was skipped ({s} of at most {MAX_SKIPPED_STEPS} skipped steps)"
        for s in range(1, MAX_SKIPPED_STEPS + 1)]
    last = MAX_SKIPPED_STEPS + 1
    assert lines[-1] == (
        f"error: step {last}: engine logprobs has 16 non-finite values (nan); loss is nan; gradient norm is nan; "
        f"{last} steps were non-finite (steps 1, 2, 3, 4; at most {MAX_SKIPPED_STEPS} may be skipped), so the run "
        "stops. Check the model's weights, the engine, lr and max_grad_norm; checkpoints already written are kept.")
    assert "Traceback" not in proc.stderr
    metrics = read_metrics(tmp_path / "runs" / "nan")
    assert [m["guard/skipped_steps"] for m in metrics] == [1.0, 2.0, 3.0]  # the stopping step is not logged


def test_guard_counts_skips_and_names_each_quantity():
    guard = NonFiniteGuard(max_skipped=1)
    assert guard.check(1, {"loss": 0.5, "gradient norm": 2.0}) is True
    assert guard.check(2, {"loss": float("inf"), "gradient norm": 2.0}) is False
    assert guard.skipped == [2]
    from retrain.errors import NumericsError

    with pytest.raises(NumericsError, match=r"^step 5: gradient norm is nan; 2 steps were non-finite \(steps 2, 5;"):
        guard.check(5, {"loss": 0.1, "gradient norm": float("nan")})
