"""The in-process vllm engine ([vllm] mode = "in-process") on a tiny model, on CPU."""

from __future__ import annotations

import pytest

from retrain.types import SamplingParams

from vllm_helpers import make_ctx, train_once, trainer_logprobs

PROMPTS = [[2, 10, 11, 12], [2, 20, 21, 22, 23]]
PARAMS = SamplingParams(n=3, max_tokens=10, temperature=1.0, seed=7)


@pytest.fixture(scope="module")
def setup(vllm_model, tmp_path_factory):
    ctx = make_ctx(vllm_model, tmp_path_factory.mktemp("run"), inference={"engine": "vllm"},
                   vllm={"max_model_len": 256})
    engine = ctx.registry.build("engine", "vllm", ctx=ctx)
    yield ctx, engine
    engine.close()


def test_generate_rows_groups_and_exact_logprobs(setup):
    ctx, engine = setup
    gen = engine.generate(PROMPTS, PARAMS)
    assert len(gen.completion_ids) == 6 and gen.policy_version == 0
    assert all(len(c) == len(lp) and 1 <= len(c) <= 10 for c, lp in zip(gen.completion_ids, gen.logprobs))
    assert set(gen.finish_reasons) <= {"stop", "length"}
    again = engine.generate(PROMPTS, PARAMS)
    assert again.completion_ids == gen.completion_ids  # seeded
    trainer, eng = trainer_logprobs(ctx.backend, PROMPTS, gen, PARAMS.n)
    assert float((trainer - eng).abs().max()) < 1e-4  # vLLM's sampling logprobs = the trainer's


def test_temperature_is_applied_to_logprobs(setup):
    ctx, engine = setup
    hot = SamplingParams(n=2, max_tokens=6, temperature=0.7, seed=3)
    gen = engine.generate(PROMPTS, hot)
    ctx.backend.temperature = 0.7  # the trainer scores at the sampling temperature
    try:
        trainer, eng = trainer_logprobs(ctx.backend, PROMPTS, gen, hot.n)
    finally:
        ctx.backend.temperature = ctx.config.training.temperature
    assert float((trainer - eng).abs().max()) < 1e-4


def test_sync_changes_outputs_and_matches_trainer(setup):
    ctx, engine = setup
    backend = ctx.backend
    before = engine.generate(PROMPTS, PARAMS)
    for _ in range(2):
        train_once(backend, engine.generate(PROMPTS, PARAMS), PROMPTS, PARAMS.n)
    engine.sync(backend, backend.version)
    after = engine.generate(PROMPTS, PARAMS)
    assert after.policy_version == backend.version == 2
    assert engine.lora_request.lora_name == "retrain-v2"
    assert after.logprobs != before.logprobs  # the adapter is in use
    trainer, eng = trainer_logprobs(backend, PROMPTS, after, PARAMS.n)
    assert float((trainer - eng).abs().max()) < 1e-4
    assert sorted(p.name for p in (engine.weights_dir).iterdir()) == ["v2"]  # older versions pruned


def test_stale_adapter_is_caught(setup):
    from retrain.errors import RetrainError

    _, engine = setup
    good = engine.lora_request
    engine.version += 1  # the engine claims a version whose adapter it never loaded
    try:
        with pytest.raises(RetrainError, match="does not belong to policy version"):
            engine.generate(PROMPTS, PARAMS)
    finally:
        engine.version -= 1
    assert engine.lora_request is good
