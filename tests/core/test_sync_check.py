"""The post-sync check (retrain.train.guards.check_sync) with the real pytorch engine and local backend:
an engine on the trainer's weights agrees to ~1e-7; an engine on other weights is an error naming
the step and the gap. (vLLM's tied-embedding case: plugins/retrain-vllm/tests/test_tied_sync.py.)"""

from __future__ import annotations

import pytest
import torch
from retrain.config import config_from_dict
from retrain.errors import NumericsError
from retrain.train.guards import SYNC_PROBE_TOKENS, check_sync
from retrain.types import RunContext


def _parts(model_dir, **sections):
    from retrain.backends.local import LocalBackend
    from retrain.engines.pytorch import PytorchEngine

    data = {"model": {"model": str(model_dir), "lora_rank": 0}, "training": {"lr": 1e-2}}
    for name, body in sections.items():
        data.setdefault(name, {}).update(body)
    ctx = RunContext(config=config_from_dict(data), registry=None)
    torch.manual_seed(0)
    ctx.backend = LocalBackend(ctx=ctx, devices="cpu")
    ctx.tokenizer = ctx.backend.tokenizer
    return ctx, PytorchEngine(ctx=ctx)


PROMPT = [[2, 10, 11, 12, 13]]


def test_the_engine_on_the_trainers_weights_agrees(tiny_model):
    ctx, engine = _parts(tiny_model)
    assert check_sync(ctx, engine, ctx.backend, 1, PROMPT) == {}  # shares_weights: nothing to compare by default
    metrics = check_sync(ctx, engine, ctx.backend, 1, PROMPT, force=True)
    assert set(metrics) == {"sync/logprob_gap"} and metrics["sync/logprob_gap"] < 1e-5


def test_an_engine_on_other_weights_stops_the_run(tiny_model, tmp_path):
    from retrain.testing import tiny_model_dir

    other = tiny_model_dir(tmp_path / "other", seed=1)  # same shape and tokenizer, other weights
    ctx, engine = _parts(tiny_model)
    trainer_ctx, _ = _parts(other)
    with pytest.raises(NumericsError) as info:
        check_sync(ctx, engine, trainer_ctx.backend, 4, PROMPT, force=True)
    msg = str(info.value)
    assert msg.startswith("step 4: after the weight sync, the engine's logprobs differ from the trainer's by ")
    assert f"({SYNC_PROBE_TOKENS} probe tokens; [inference] sync_tolerance = 0.05): the engine samples from other " \
           "weights than the trainer holds." in msg


def test_tolerance_zero_turns_the_check_off(tiny_model):
    ctx, engine = _parts(tiny_model, inference={"sync_tolerance": 0})
    assert check_sync(ctx, engine, ctx.backend, 1, PROMPT, force=True) == {}


def test_a_pytorch_engine_sampling_from_a_copy_is_probed_and_a_stale_copy_stops_the_run(tiny_model):
    """[inference] device (and max_staleness 1's snapshot): the engine samples from a copy, so the probe runs without
    force; a copy that missed the trainer's update is caught."""
    ctx, engine = _parts(tiny_model, inference={"device": "cpu"})
    assert engine.samples_from_copy
    metrics = check_sync(ctx, engine, ctx.backend, 1, PROMPT)
    assert set(metrics) == {"sync/logprob_gap"} and metrics["sync/logprob_gap"] < 1e-5
    with torch.no_grad():
        for p in ctx.backend.model.parameters():
            p.add_(torch.randn_like(p) * 0.5)  # an update the copy never received (no engine.sync)
    with pytest.raises(NumericsError, match="^step 2: after the weight sync, the engine's logprobs differ"):
        check_sync(ctx, engine, ctx.backend, 2, PROMPT)
