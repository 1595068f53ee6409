"""The default run (`retrain retrain.toml`, docs/default-run.md): the file says what the docs say,
its held-out problems are never trained on, its reward cannot be gamed by boxing the question, and
the real CLI runs it end to end (a tiny model and one step, so CI stays fast)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from retrain.environments.synthetic import SyntheticEnvironment
from retrain.rewards.basic import MathReward
from retrain.run_config import load_run_config
from retrain.types import RunContext

ROOT = Path(__file__).resolve().parents[2]
RETRAIN_TOML = ROOT / "retrain.toml"


def test_retrain_toml_is_smollm2_on_the_synthetic_task_with_at_least_64_held_out_problems() -> None:
    cfg, _ = load_run_config(RETRAIN_TOML)
    assert cfg.model.model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert cfg.backend.devices == "auto"  # the GPU when there is one, else the CPU
    assert cfg.data.source == "synthetic" and cfg.eval.num_problems >= 64
    assert (cfg.reward.type, cfg.reward.fallback) == ("math", "none")  # boxed answers only
    assert cfg.eval.at_start and cfg.eval.at_end


@pytest.mark.parametrize("seed", [42, 1, 2])
def test_held_out_problems_are_disjoint_from_everything_the_run_trains_on(seed: int) -> None:
    cfg, registry = load_run_config(RETRAIN_TOML, {"training.seed": seed})
    env = registry.build("environment", cfg.data.source, ctx=RunContext(config=cfg, registry=registry))
    assert isinstance(env, SyntheticEnvironment)
    held = {t.prompt for t in env.eval_tasks(cfg.eval.num_problems)}
    assert len(held) == cfg.eval.num_problems
    trained = {t.prompt for t in env.sample(cfg.training.batch_size * cfg.training.max_steps * 10)}
    assert not held & trained


def test_math_reward_scores_the_question_copied_into_the_box_as_wrong() -> None:
    """math-verify evaluates ``75 \\div 5`` to 15; SmolLM2 found that within 20 steps (0% -> 100%)."""
    reward = MathReward(fallback="none", workers=1)
    try:
        result = reward.score(
            ["\\boxed{75 \\div 5}", "$75 \\div 5 = 15$. \\boxed{15}", "\\boxed{x = 15}", "\\boxed{15.0}",
             "\\boxed{6 - 88}", "\\boxed{-82}", "\\boxed{14 \\times 3}", "\\boxed{\\frac{84}{2}}"],
            ["15", "15", "15", "15", "-82", "-82", "42", "42"])
    finally:
        reward.close()
    assert result.rewards == [0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0]  # \frac{84}{2}: division left to do (docs/rewards.md)
    assert result.errors == 0 and result.timeouts == 0


def test_retrain_toml_runs_end_to_end_through_the_cli(tiny_model: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "from retrain.cli.main import main; main()", "retrain.toml",
           "--set", f"model.model={tiny_model}", "--set", f"logging.log_dir={tmp_path}",
           "--set", "training.max_steps=1", "--set", "eval.num_problems=4", "--set", "reward.workers=1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = re.search(r"held-out accuracy: (\d+\.\d)% -> (\d+\.\d)% \(([+-]\d+\.\d) points; 4 problems, "
                     r"greedy pass@1, step 0 -> 1\)", proc.stdout)
    assert line, proc.stdout[-2000:]

    run_dir = tmp_path / "retrain"
    before, after = (json.loads((run_dir / "eval" / f"step_{s}.json").read_text()) for s in (0, 1))
    assert before["prompt"]["fingerprint"] == after["prompt"]["fingerprint"]  # same prompt before and after
    assert before["prompt"]["few_shot"] and before["reward"] == after["reward"] == "math"
    held_ids = [p["id"] for p in before["problems"]]
    assert held_ids == [p["id"] for p in after["problems"]] and len(held_ids) == 4
    trained_ids = {json.loads(row)["task_id"] for row in (run_dir / "samples.jsonl").read_text().splitlines()}
    assert trained_ids and not trained_ids & set(held_ids)
    accuracy = float(line.group(1)), float(line.group(2))
    assert accuracy == (round(before["metrics"]["eval/pass@1"] * 100, 1), round(after["metrics"]["eval/pass@1"] * 100, 1))
