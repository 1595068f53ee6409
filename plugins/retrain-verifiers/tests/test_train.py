"""Both fixture environments train for a few steps through `retrain RUN.toml` with provider = "verifiers"."""

from __future__ import annotations

import pytest
from vf_helpers import metrics, retrain, samples, write_run


def test_single_turn_env_trains_with_its_rubric(vf_envs, vf_model, tmp_path):
    proc = retrain(write_run(tmp_path, vf_model, "retrain-vf-letters", steps=2), vf_envs.site)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["reward/letter_share"] == pytest.approx(r["reward/mean"])  # the env's @vf.reward is the reward
        assert r["env/turns_mean"] == 1.0 and r["env/episode_errors"] == 0.0
        assert r["mismatch/kl"] == pytest.approx(0.0, abs=1e-6)
    for s in samples(tmp_path):  # each sample's reward recomputed by hand from its text
        reply, letter = s["completion"].strip(), s["reference"]
        want = sum(1.0 if c == letter else 0.25 if c.islower() else 0.0 for c in reply) / len(reply) if reply else 0.0
        assert s["reward"] == pytest.approx(want)


def test_multi_turn_game_trains_on_model_tokens_only(vf_envs, vf_model, tmp_path):
    config = write_run(tmp_path, vf_model, "retrain-vf-guess", steps=2, max_tokens=4, extra="max_turns = 3",
                       at_end=True)
    proc = retrain(config, vf_envs.site)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["reward/solved"] == pytest.approx(r["reward/mean"])  # the reward the game recorded
        assert 1.0 < r["env/turns_mean"] <= 3.0  # episodes went on for several turns, capped by max_turns
        # the trainer re-scores exactly the ids the engine sampled (no re-tokenisation drift):
        # its logprobs equal the sampling logprobs on every trained token
        assert r["mismatch/abs_logprob_delta"] < 1e-5
        assert r["completion/length_mean"] <= 3 * 4  # only model tokens count (mask), <= turns x max_tokens
    final = rows[-1]  # held-out evaluation plays the game too (greedy), scored by the game
    assert 0.0 <= final["eval/reward_mean"] <= 1.0 and final["eval/errors"] == 0.0
    assert any("higher" in s["completion"] or "lower" in s["completion"] or "no digit" in s["completion"]
               for s in samples(tmp_path))  # rows hold the whole game
