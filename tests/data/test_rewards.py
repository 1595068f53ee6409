"""The built-in rewards with exact expected scores, including adversarial answers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from retrain.config import config_from_dict
from retrain.errors import ConfigError
from retrain.plugins import load_plugins
from retrain.rewards import build_reward
from retrain.rewards.basic import MatchReward, MathReward
from retrain.types import RunContext


@pytest.fixture(scope="module")
def math_reward():
    reward = MathReward(timeout=3.0, workers=2)  # generous for a loaded 2-core CI machine
    yield reward
    reward.close()


def ctx_for(reward: dict, tmp_path: Path | None = None) -> RunContext:
    return RunContext(config=config_from_dict({"reward": reward}), registry=load_plugins(), run_dir=tmp_path)


def test_match_reward_exact_scores() -> None:
    result = MatchReward(fallback="answer_is").score(
        ["\\boxed{\\dfrac{1}{2}}", "The answer is 12.", "\\boxed{0.5}", "nothing", "\\boxed{ 1,000 }"],
        ["\\frac{1}{2}", "12", "\\frac{1}{2}", "3", "1000"])
    assert result.rewards == [1.0, 1.0, 0.0, 0.0, 1.0]  # match is string-exact: 0.5 != 1/2
    assert (result.errors, result.timeouts) == (0, 0)


def test_math_reward_equivalence(math_reward: MathReward) -> None:
    responses = [
        "so \\boxed{\\frac{1}{2}}",  # 0.5
        "\\boxed{0.5}",
        "\\boxed{\\{2, 1\\}}",  # set order
        "\\boxed{3, -1}",  # a list vs a set
        "\\boxed{2\\sqrt{2}}",
        "\\boxed{\\sqrt{8}}",
        "\\boxed{7}",
        "no answer here at all",
        "\\boxed{x+1} then \\boxed{1.5}",  # the last box counts
    ]
    references = ["0.5", "\\frac12", "\\{1, 2\\}", "-1, 3", "\\sqrt{8}", "2\\sqrt{2}", "8", "4", "\\frac{3}{2}"]
    result = math_reward.score(responses, references)
    assert result.rewards == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert (result.errors, result.timeouts) == (0, 0)


def test_math_reward_adversarial_answers_time_out_not_hang(math_reward: MathReward) -> None:
    huge = "1" + "0" * 100000  # 10**100000 written out: longer than any answer, scored 0 unchecked
    responses = [
        "\\boxed{9^{9^{9^{9}}}}",  # sympy tries to evaluate a power tower: hangs -> killed
        f"\\boxed{{{huge}}}",
        f"\\boxed{{{huge}}}",
        "\\boxed{10^{100000}}",
        "\\boxed{\\frac{\\frac{\\frac{x}{2}}{3}}{4}}",  # nested braces
        "\\boxed{{{{{{{{{{1}}}}}}}}}}",
        "\\boxed{\\frac{1}{2}",  # unbalanced: no complete box; no fallback by default: no answer
        "\\boxed{2}",  # the pool still works after a worker was killed
    ]
    references = ["9^{x}", "1", huge, "10^{100000}", "\\frac{x}{24}", "1", "2", "2"]
    start = time.monotonic()
    result = math_reward.score(responses, references)
    elapsed = time.monotonic() - start
    assert result.rewards == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    assert (result.timeouts, result.errors, result.unparsed_refs) == (1, 0, 0)
    assert elapsed < 3.0 * 2 + 5  # one timeout window (+ a worker restart), not a hang


def test_math_reward_after_timeout_counts_again(math_reward: MathReward) -> None:
    result = math_reward.score(["\\boxed{2^{2^{2^{2^{2^{2}}}}}}", "\\boxed{4}"], ["2^{x}", "2+2"])
    assert result.rewards == [0.0, 1.0] and result.timeouts == 1


def test_build_reward_by_name_uses_reward_section() -> None:
    reward = build_reward(ctx_for({"type": "match", "fallback": "none"}))
    assert isinstance(reward, MatchReward) and reward.fallback == "none"
    assert reward.score(["The answer is 3"], ["3"]).rewards == [0.0]


def test_unknown_reward_name_is_one_clear_error() -> None:
    from retrain.errors import PluginError

    with pytest.raises(PluginError, match='\\[reward\\] type = "mathh": no such reward. Did you mean "math"\\?'):
        build_reward(ctx_for({"type": "mathh"}))


def test_bad_fallback_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fallback"):
        MatchReward(fallback="first")
