"""`retrain RUN.toml` with backend = "tinker" against the stand-in: 3 steps that train, then
2 steps + `--resume` that continue bit for bit; the API key never reaches the run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tinker")

from retrain.run_config import load_run_config  # noqa: E402
from retrain.testing import read_metrics as rows  # noqa: E402
from retrain.train.runner import train  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from retrain.testing.runs import VOLATILE_METRICS as VOLATILE  # noqa: E402
from tinker_helpers import KEY, run_config, run_retrain  # noqa: E402


def stable(rows_: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows_]


def service_adapter(checkpoint: Path, state_dir: Path) -> dict:
    """The adapter the stand-in saved for a retrain checkpoint (tinker.json -> tinker:// path -> its folder)."""
    state = json.loads((checkpoint / "backend" / "tinker.json").read_text())
    model_id, name = state["state_path"].removeprefix("tinker://").split("/weights/")
    folder = state_dir / "models" / model_id.replace(":", "_") / "weights" / name
    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


def test_three_steps_train_and_resume_continues_bit_for_bit(standin_with_state, tiny_model, tmp_path, tinker_key):
    url, state_dir = standin_with_state
    env = {"TINKER_API_KEY": KEY}
    full = run_config(tmp_path / "full.toml", model=tiny_model, url=url, log_dir=tmp_path / "a", name="full", steps=3)
    proc = run_retrain(str(full), env=env)
    assert proc.returncode == 0, proc.stderr
    reference = rows(tmp_path / "a" / "full")
    assert [r["step"] for r in reference] == [1, 2, 3]
    assert all(r["train/grad_norm"] > 0 and r["reward/std"] > 0 for r in reference)  # real gradients every step
    # the sampler of step k serves the weights of step k: sampler and trainer logprobs agree to fp32 rounding
    assert all(r["mismatch/abs_logprob_delta"] < 1e-5 for r in reference)
    # and after each sync, retrain's probe finds the new sampler on the trainer's new weights
    assert all(r["sync/logprob_gap"] < 1e-5 for r in reference)
    first = service_adapter(tmp_path / "a" / "full" / "checkpoints" / "step_1", state_dir)
    last = service_adapter(tmp_path / "a" / "full" / "checkpoints" / "step_3", state_dir)
    assert max(float((first[k] - last[k]).abs().max()) for k in first) > 1e-3  # training moved the adapter

    part = run_config(tmp_path / "part.toml", model=tiny_model, url=url, log_dir=tmp_path / "b", name="part", steps=2)
    train(*load_run_config(part), config_path=part)  # 2 steps in-process (as the CLI loads it), then the CLI resumes
    run_config(tmp_path / "part.toml", model=tiny_model, url=url, log_dir=tmp_path / "b", name="part", steps=3)
    proc = run_retrain(str(part), "--resume", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "resumed from" in proc.stderr and "step_2" in proc.stderr
    resumed = rows(tmp_path / "b" / "part")
    assert stable(resumed) == stable(reference)
    final = service_adapter(tmp_path / "b" / "part" / "checkpoints" / "step_3", state_dir)
    assert all(bool((final[k] == last[k]).all()) for k in last)
    for f in (tmp_path / "b" / "part").rglob("*"):  # the key lives in the environment only
        assert not f.is_file() or KEY.encode() not in f.read_bytes(), f
