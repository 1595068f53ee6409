"""Managed vLLM server ([vllm] mode = "server") and the core openai engine against it, on CPU.

One server for the module; the last test kills it on purpose.
"""

from __future__ import annotations

import os
import signal
import urllib.request
import json
from pathlib import Path

import pytest
from vllm_helpers import make_ctx, train_once, trainer_logprobs

from retrain.errors import RetrainError
from retrain.types import SamplingParams

PROMPTS = [[2, 10, 11, 12], [2, 20, 21, 22, 23]]
PARAMS = SamplingParams(n=3, max_tokens=10, temperature=1.0, seed=7)


def models(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url + "/models") as r:
        return {m["id"]: m["root"] for m in json.load(r)["data"]}


def post(url: str, path: str, payload: dict) -> None:
    req = urllib.request.Request(url.removesuffix("/v1") + path, data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()


@pytest.fixture(scope="module")
def server(vllm_model, tmp_path_factory):
    ctx = make_ctx(vllm_model, tmp_path_factory.mktemp("run"), inference={"engine": "vllm", "retries": 1},
                   vllm={"mode": "server", "max_model_len": 256})
    engine = ctx.registry.build("engine", "vllm", ctx=ctx)
    yield ctx, engine
    engine.close()
    with pytest.raises(ProcessLookupError):
        os.kill(engine.pid, 0)  # the server is gone


def test_server_starts_on_loopback_and_samples_exact_logprobs(server):
    ctx, engine = server
    assert engine.url.startswith("http://127.0.0.1:")
    assert (ctx.run_dir / "vllm" / "server.log").is_file()
    gen = engine.generate(PROMPTS, PARAMS)
    assert len(gen.completion_ids) == 6 and gen.policy_version == 0
    assert engine.generate(PROMPTS, PARAMS).completion_ids == gen.completion_ids  # seeded
    trainer, eng = trainer_logprobs(ctx.backend, PROMPTS, gen, PARAMS.n)
    assert float((trainer - eng).abs().max()) < 1e-4


def test_sync_loads_versioned_adapter_and_matches_trainer(server):
    ctx, engine = server
    backend = ctx.backend
    before = engine.generate(PROMPTS, PARAMS)
    train_once(backend, before, PROMPTS, PARAMS.n)
    engine.sync(backend, backend.version)
    train_once(backend, engine.generate(PROMPTS, PARAMS), PROMPTS, PARAMS.n)
    engine.sync(backend, backend.version)
    served = models(engine.url)
    assert sorted(served) == ["retrain-base", "retrain-v2"]  # v1 was unloaded
    assert Path(served["retrain-v2"]) == engine.engine.weights_dir / "v2"
    after = engine.generate(PROMPTS, PARAMS)
    assert after.policy_version == 2 and after.logprobs != before.logprobs
    trainer, eng = trainer_logprobs(backend, PROMPTS, after, PARAMS.n)
    assert float((trainer - eng).abs().max()) < 1e-4


def test_stale_adapter_is_caught(server, tmp_path):
    from retrain.engines.openai import StaleWeightsError

    ctx, engine = server
    # someone reloads the served name from another adapter: the engine must not sample from it
    other = ctx.backend.save_adapter(tmp_path / "other")
    post(engine.url, "/v1/load_lora_adapter", {"lora_name": "retrain-v2", "lora_path": str(other),
                                                "load_inplace": True})
    with pytest.raises(StaleWeightsError, match=r"serves 'retrain-v2' from .*other, not from .*v2 \(policy version 2\)"):
        engine.generate(PROMPTS, PARAMS)
    # ... or unloads it
    post(engine.url, "/v1/unload_lora_adapter", {"lora_name": "retrain-v2"})
    with pytest.raises(StaleWeightsError, match=r"does not serve adapter 'retrain-v2' \(policy version 2\)"):
        engine.generate(PROMPTS, PARAMS)
    engine.sync(ctx.backend, ctx.backend.version)  # a new sync repairs it
    assert engine.generate(PROMPTS, PARAMS).policy_version == 2


def test_core_openai_engine_full_weight_sync(server, vllm_model, tmp_path):
    """engine = "openai" with a full fine-tuning trainer: /collective_rpc reload + /update_weight_version."""
    _, managed = server
    ctx = make_ctx(vllm_model, tmp_path, model={"lora_rank": 0},
                   inference={"engine": "openai", "url": managed.url, "retries": 1})
    engine = ctx.registry.build("engine", "openai", ctx=ctx)
    assert engine.flavour.name == "vllm" and engine.base_model == "retrain-base"
    gen = engine.generate(PROMPTS, PARAMS)
    train_once(ctx.backend, gen, PROMPTS, PARAMS.n)
    engine.sync(ctx.backend, 1)
    with urllib.request.urlopen(managed.url.removesuffix("/v1") + "/weight_info") as r:
        assert json.load(r)["weight_version"] == "retrain-v1"
    after = engine.generate(PROMPTS, PARAMS)
    assert after.policy_version == 1 and after.logprobs != gen.logprobs
    trainer, eng = trainer_logprobs(ctx.backend, PROMPTS, after, PARAMS.n)
    assert float((trainer - eng).abs().max()) < 1e-4


def test_killed_server_gives_a_clear_error(server):
    _, engine = server
    os.kill(engine.pid, signal.SIGKILL)
    engine.proc.wait(timeout=30)
    with pytest.raises(RetrainError, match=r"the vLLM server \(pid \d+\) stopped with exit code -9.*resume with --resume latest"):
        engine.generate(PROMPTS, PARAMS)
