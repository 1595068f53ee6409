"""Custom rewards by dotted path (per item in workers, batched in process) and weighted combos."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from retrain.config import config_from_dict
from retrain.errors import ConfigError, PluginError
from retrain.plugins import load_plugins
from retrain.rewards import build_reward
from retrain.rewards.custom import CustomReward
from retrain.types import RunContext

USER_MODULE = textwrap.dedent('''
    import os, time

    def length_score(response, reference):
        """1 when the response is exactly as long as the reference."""
        if response == "boom":
            raise RuntimeError("boom")
        if response == "sleep":
            time.sleep(60)
        if response == "exit":
            os._exit(3)
        if response == "nan":
            return float("nan")
        return 1.0 if len(response) == len(reference) else 0.25

    def score_batch(responses, references):
        if "fail" in responses:
            raise ValueError("no")
        return [float(len(r)) for r in responses]

    def brevity(response, reference):
        return 1.0 / len(response)
''')


@pytest.fixture()
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"user_rewards_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)  # dotted paths resolve in the working directory
    yield name
    sys.modules.pop(name, None)


def ctx_for(reward: dict) -> RunContext:
    return RunContext(config=config_from_dict({"reward": reward}), registry=load_plugins())


def test_custom_per_item_scores_counts_errors_and_timeouts(user_module: str) -> None:
    reward = build_reward(ctx_for({"type": f"{user_module}.length_score", "timeout": 1.0}))
    assert isinstance(reward, CustomReward) and not reward.batched
    try:
        result = reward.score(["abc", "ab", "boom", "sleep", "exit", "nan", "xyz"], ["abc"] * 7)
    finally:
        reward.close()
    assert result.rewards == [1.0, 0.25, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert result.timeouts == 1  # "sleep"
    assert result.errors == 3  # "boom" raised, "exit" killed its worker, "nan" is not finite


def test_custom_batched_runs_in_process(user_module: str) -> None:
    reward = build_reward(ctx_for({"type": "custom", "function": f"{user_module}.score_batch"}))
    assert reward.batched
    assert reward.score(["a", "abcd"], ["", ""]).rewards == [1.0, 4.0]
    failed = reward.score(["a", "fail"], ["", ""])
    assert failed.rewards == [0.0, 0.0] and failed.errors == 2


def test_custom_without_function_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match='needs \\[reward\\] function = "module.score"'):
        build_reward(ctx_for({"type": "custom"}))


def test_custom_missing_module_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginError, match="\\[reward\\] type = \"nowhere_mod.score\": cannot import module 'nowhere_mod'"):
        build_reward(ctx_for({"type": "nowhere_mod.score"}))


def test_combo_weighted_sum_with_terms(user_module: str) -> None:
    reward = build_reward(ctx_for({"type": "combo", "terms": [
        {"type": "match", "weight": 2.0},
        {"type": f"{user_module}.brevity", "weight": 0.5, "name": "brevity", "timeout": 2.0},
    ]}))
    try:
        result = reward.score(["\\boxed{4}", "\\boxed{5} and more"], ["4", "4"])
    finally:
        reward.close()
    assert result.terms == {"match": [1.0, 0.0], "brevity": [1 / 9, 1 / 18]}
    assert result.rewards == pytest.approx([2.0 + 0.5 / 9, 0.5 / 18])
    assert (result.errors, result.timeouts) == (0, 0)


def test_combo_rejects_unknown_term_option() -> None:
    with pytest.raises(ConfigError, match='\\[reward\\] terms\\[0\\]: unknown option timout for reward "math". '
                                          'Did you mean "timeout"\\?'):
        build_reward(ctx_for({"type": "combo", "terms": [{"type": "math", "timout": 1}]}))


def test_combo_needs_terms_and_unique_names() -> None:
    with pytest.raises(ConfigError, match="needs terms"):
        build_reward(ctx_for({"type": "combo"}))
    with pytest.raises(ConfigError, match='two terms are named "match"'):
        build_reward(ctx_for({"type": "combo", "terms": [{"type": "match"}, {"type": "match"}]}))
