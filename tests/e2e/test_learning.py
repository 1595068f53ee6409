"""Learning tests: a tiny random-init model learns a toy verifiable task through the real loop.

CopyDigitEnv shows a digit and rewards a completion that starts with it. A random char-level
model (vocab ~100) scores ~1%; after training, the mean reward of the last steps must be >= 0.9
and greedy held-out accuracy must be >= 0.9. A sign error in the advantages would push probability
away from the rewarded digit; the advantage sign check refuses it at the first step (checked below
with a negated advantage given as a plain function by dotted path).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from retrain.config import load_config
from retrain.errors import NumericsError
from retrain.plugins import load_plugins
from retrain.testing import read_metrics, write_toy_config
from retrain.train.runner import train


def learning_config(tmp_path: Path, model: Path, *, advantage: str, steps: int, **sections: dict) -> Path:
    """10 prompts x 32 samples x 1 token per step; held-out eval of 10 problems before and after."""
    return write_toy_config(
        tmp_path / f"{advantage.rsplit('.', 1)[-1]}.toml", model, tmp_path / "runs",
        algorithm={"advantage_mode": advantage},
        training={"max_steps": steps, "batch_size": 10, "group_size": 32, "max_tokens": 1, "temperature": 1.0,
                  "lr": 2e-3, "seed": 1},
        eval={"num_problems": 10, "at_start": True, "at_end": True}, **sections)


def run(path: Path) -> list[dict]:
    return read_metrics(train(load_config(path), load_plugins(), config_path=path))


@pytest.mark.slow
@pytest.mark.parametrize("advantage", ["grpo", "maxrl"])
def test_tiny_model_learns_copy_digit(tiny_model, tmp_path, advantage):
    start = time.monotonic()
    rows = run(learning_config(tmp_path, tiny_model, advantage=advantage, steps=80))
    steps = [r for r in rows if r["step"] > 0]
    assert [r["step"] for r in steps] == list(range(1, 81))
    first = sum(r["reward/mean"] for r in steps[:3]) / 3
    last = sum(r["reward/mean"] for r in steps[-10:]) / 10
    print(f"{advantage}: reward {first:.3f} -> {last:.3f} in {time.monotonic() - start:.0f} s")
    assert first < 0.1, "should start near chance"
    assert last >= 0.9, f"did not learn: mean reward of the last 10 steps {last:.3f}"
    if "eval/pass@1" in rows[0]:
        assert rows[0]["step"] == 0 and rows[0]["eval/pass@1"] <= 0.2
        assert steps[-1]["eval/pass@1"] >= 0.9


NEGATED = '''
from retrain.advantages.episode import GRPO

def negated(rewards):
    return -GRPO()(rewards)
'''


def test_a_sign_error_is_refused_at_the_first_step(tiny_model, tmp_path, monkeypatch):
    """An advantage that pushes the rewarded samples down once trained away from the task (reward
    stayed near 0 over 40 steps); the advantage sign check now stops it at step 1, in one line."""
    (tmp_path / "flip.py").write_text(NEGATED)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(NumericsError) as e:
        run(learning_config(tmp_path, tiny_model, advantage="flip.negated", steps=40))
    assert str(e.value).startswith('advantage mode "flip.negated" at step 1: advantages [')
    assert "contradict rewards" in str(e.value) and "\n" not in str(e.value)
