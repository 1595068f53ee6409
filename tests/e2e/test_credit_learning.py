"""Token-level credit through real training steps: the README custom transform via the CLI,
SEPA controller state across --resume, and learning with gtpo_sepa / gtpo_hicra."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from retrain.testing import read_metrics, toy_config, write_toy_config

def readme_transform() -> str:
    """The `my_transforms.py` block of README.md, verbatim (the README example must run unchanged)."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    after = text.split("`my_transforms.py`", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


README_TRANSFORM = readme_transform()


def test_readme_transform_runs_unchanged_through_the_cli(tiny_model, tmp_path):
    """my_transforms.py next to the config; `retrain exp/run.toml` from another folder."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "my_transforms.py").write_text(textwrap.dedent(README_TRANSFORM))
    # parity of the completion length: every group has both outcomes, so advantages are non-zero
    (exp / "my_reward.py").write_text("def score(response, reference):\n    return float(len(response) % 2)\n")
    write_toy_config(exp / "run.toml", tiny_model, tmp_path / "runs",
                     algorithm={"advantage_mode": "maxrl", "transform_mode": "my_transforms.make_transform_spec"},
                     training={"max_steps": 2, "max_tokens": 8},
                     reward={"type": "custom", "function": "my_reward.score", "workers": 1},
                     sepa={"delay_steps": 0, "steps": 1, "correct_rate_gate": 0.0})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-c", "from retrain.cli.main import main; main()", "../exp/run.toml"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_metrics(tmp_path / "runs" / "run")
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["sepa/lambda"] == 1.0  # lambda ramps 0 -> 1 in one step after delay 0
        assert "planning/frac" in r and "uncertainty/execution_mean" in r
    assert any(r["adv/token_mean_abs"] > 0 and r["train/grad_norm"] > 0 for r in rows)


def _sepa_config(tiny_model: Path, log_dir: Path, name: str, max_steps: int):
    from retrain.config import config_from_dict
    from retrain.plugins import load_plugins

    registry = load_plugins()
    data = toy_config(
        tiny_model, log_dir, run_name=name,
        algorithm={"advantage_mode": "grpo", "transform_mode": "gtpo_sepa"},
        training={"max_steps": max_steps, "max_tokens": 6, "save_every": 1, "lr": 1e-3},
        # auto schedule dominated by the variance EMA (the linear ramp is negligible): losing the
        # controller state on resume would change lambda
        sepa={"schedule": "auto", "delay_steps": 0, "steps": 100000, "correct_rate_gate": 0.0,
              "warmup": 2, "ema_decay": 0.5, "var_target": 0.0})
    return config_from_dict(data, source="sepa.toml", plugin_sections=registry.plugin_sections()), registry


def test_resume_keeps_sepa_controller_state(tiny_model, tmp_path):
    from retrain.train.runner import train

    cfg, reg = _sepa_config(tiny_model, tmp_path, "straight", 5)
    straight = read_metrics(train(cfg, reg))
    cfg, reg = _sepa_config(tiny_model, tmp_path, "resumed", 3)
    run_dir = train(cfg, reg)
    state = json.dumps(_credit_state(run_dir))
    assert '"var_ref"' in state and '"gate_open": true' in state
    cfg, reg = _sepa_config(tiny_model, tmp_path, "resumed", 5)
    resumed_dir = train(cfg, reg, resume="latest")
    resumed = read_metrics(resumed_dir)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5]
    lambdas = [r["sepa/lambda"] for r in straight]
    assert lambdas[:2] == pytest.approx([1e-5, 2e-5])  # warm-up: the linear floor only
    assert [r["sepa/lambda"] for r in resumed] == pytest.approx(lambdas, abs=1e-7)
    # the controller continued from the checkpoint: 5 observations, not 2 (a fresh one after step 3)
    final = _credit_state(resumed_dir)["sepa"]
    assert final["observed"] == 5
    assert final == pytest.approx(_credit_state(tmp_path / "straight")["sepa"])


def _credit_state(run_dir: Path) -> dict:
    from retrain.train.checkpoint import load_data

    ckpts = sorted((run_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    state = load_data(ckpts[-1] / "state.pt")  # as retrain reads it: data only
    return state["credit"]


@pytest.mark.slow
@pytest.mark.parametrize("transform", ["gtpo_sepa", "gtpo_hicra"])
def test_still_learns_with_token_transform(tiny_model, tmp_path, transform):
    """Copy-the-digit from a random-init model: greedy pass@1 from ~0 to >= 0.9 with the transform on.

    SEPA's gate (0.1) opens once the policy starts to succeed, so lambda ramps during the run.
    """
    from retrain.config import config_from_dict
    from retrain.plugins import load_plugins
    from retrain.train.runner import train

    registry = load_plugins()
    data = toy_config(
        tiny_model, tmp_path, run_name=transform,
        algorithm={"advantage_mode": "maxrl", "transform_mode": transform},
        training={"max_steps": 130, "batch_size": 8, "group_size": 16, "max_tokens": 2, "lr": 3e-3},
        sepa={"delay_steps": 0, "steps": 20, "correct_rate_gate": 0.1}, hicra={"alpha": 0.2},
        eval={"at_start": True, "at_end": True, "num_problems": 20})
    cfg = config_from_dict(data, source=f"{transform}.toml", plugin_sections=registry.plugin_sections())
    rows = read_metrics(train(cfg, registry))
    evals = [r["eval/pass@1"] for r in rows if "eval/pass@1" in r]
    assert evals[0] <= 0.2 and evals[-1] >= 0.9, evals
    train_rows = [r for r in rows if "reward/mean" in r]
    assert "planning/frac" in train_rows[-1]
    if transform == "gtpo_sepa":
        assert train_rows[-1]["sepa/gate_open"] == 1.0 and train_rows[-1]["sepa/lambda"] == 1.0
