"""Episodes run inside the environment with the real pytorch engine: rows, masks, rewards, cursor."""

from __future__ import annotations

import re

import pytest


def _parts(vf_model, tmp_path, env_id: str, max_turns: int):
    from retrain.config import config_from_dict
    from retrain.plugins import load_plugins
    from retrain.types import RunContext

    registry = load_plugins()
    data = {
        "model": {"model": str(vf_model), "lora_rank": 4},
        "training": {"batch_size": 2, "group_size": 3, "max_tokens": 5, "seed": 3},
        "environment": {"provider": "verifiers", "id": env_id, "max_turns": max_turns},
        "eval": {"num_problems": 4},
        "logging": {"log_dir": str(tmp_path)},
    }
    config = config_from_dict(data, source="run.toml", plugin_sections=registry.plugin_sections())
    ctx = RunContext(config=config, registry=registry)
    ctx.backend = registry.build("backend", "local", ctx=ctx)
    ctx.tokenizer = ctx.backend.tokenizer
    engine = registry.build("engine", "pytorch", ctx=ctx)
    env = registry.build("environment", "verifiers", ctx=ctx)
    return ctx, engine, env


def _segments(ids: list[int], mask: list[int]) -> list[tuple[int, list[int]]]:
    """Runs of equal mask value: [(mask, ids), ...]."""
    out: list[tuple[int, list[int]]] = []
    for t, m in zip(ids, mask, strict=True):
        if out and out[-1][0] == m:
            out[-1][1].append(t)
        else:
            out.append((m, [t]))
    return out


def test_multi_turn_rows_mask_the_game_and_keep_sampled_ids(vf_envs, vf_model, tmp_path):
    from retrain.prompts import render_prompt_ids
    from retrain.types import SamplingParams

    ctx, engine, env = _parts(vf_model, tmp_path, "retrain-vf-guess", max_turns=3)
    tok = ctx.tokenizer
    tasks = env.sample(2)
    assert all(t.id.startswith("train/") for t in tasks)
    params = SamplingParams(n=3, max_tokens=5, temperature=1.0, seed=11)
    prompt_ids, gen = env.rollout(engine, tok, tasks, params)
    assert len(gen.completion_ids) == len(prompt_ids) == 6
    rewards = env.reward.score(gen.texts, [t.answer for t in tasks]).rewards
    for i, (ids, mask, lps) in enumerate(zip(gen.completion_ids, gen.loss_mask, gen.logprobs, strict=True)):
        assert prompt_ids[i] == render_prompt_ids(tok, tasks[i // 3])  # turn 1 prompt = the task's chat prompt
        assert len(ids) == len(mask) == len(lps)
        segments = _segments(ids, mask)
        model_turns = [s for m, s in segments if m == 1]
        env_text = [tok.decode(s) for m, s in segments if m == 0]
        assert 1 <= len(model_turns) <= 3  # max_turns
        assert all(len(s) <= 5 for s in model_turns)  # max_tokens per turn
        for text in env_text:  # the game's answers, wrapped in the chat template, never trained on
            assert re.fullmatch(r"(<\|im_end\|>)?\n<\|im_start\|>user\n(higher|lower|no digit)<\|im_end\|>\n"
                                r"<\|im_start\|>assistant\n", text), text
        assert all(lp == 0.0 for lp, m in zip(lps, mask, strict=True) if m == 0)
        # the reward is the game's: 1 - 0.25 per extra turn when the digit was found
        assert rewards[i] in (0.0, 0.5, 0.75, 1.0)
        assert len(model_turns) == (3 if rewards[i] == 0.0 else round(1 + (1 - rewards[i]) / 0.25))
    metrics = env.rollout_metrics()
    assert metrics["env/episode_errors"] == 0.0
    assert metrics["env/engine_calls"] <= 3.0  # the 6 episodes' turns are batched: one engine call per turn


def test_single_turn_rewards_are_the_rubric(vf_envs, vf_model, tmp_path):
    from retrain.types import SamplingParams

    ctx, engine, env = _parts(vf_model, tmp_path, "retrain-vf-letters", max_turns=1)
    tasks = env.sample(2)
    _, gen = env.rollout(engine, ctx.tokenizer, tasks, SamplingParams(n=3, max_tokens=5, seed=5))
    result = env.reward.score(gen.texts, [t.answer for t in tasks])
    expected = []
    for i, text in enumerate(gen.texts):  # LettersTask.letter_share, by hand
        reply, letter = text.strip(), tasks[i // 3].answer
        expected.append(sum(1.0 if c == letter else 0.25 if c.islower() else 0.0 for c in reply) / len(reply)
                        if reply else 0.0)
    assert result.rewards == pytest.approx(expected)
    assert result.terms["letter_share"] == pytest.approx(expected)
    assert all(m == [1] * len(ids) for m, ids in zip(gen.loss_mask, gen.completion_ids, strict=True))


def test_cursor_and_held_out_tasks(vf_envs, vf_model, tmp_path):
    _, _, env = _parts(vf_model, tmp_path, "retrain-vf-letters", max_turns=1)
    first = [t.id for t in env.sample(3)]
    state = env.state_dict()
    after = [t.id for t in env.sample(3)]
    env.load_state_dict(state)
    assert [t.id for t in env.sample(3)] == after and state == {"cursor": 3}
    held = env.eval_tasks(4)  # the letters taskset has a "test" split: evaluation uses it
    assert [t.id for t in held] == ["eval/0", "eval/1", "eval/2", "eval/3"]
    assert [t.answer for t in held] == ["b", "a", "b", "a"]  # the "test" split, not held-out training tasks
    assert not set(first) & {t.id for t in held}
