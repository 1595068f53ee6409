"""The core openai engine: SGLang flavour (against FakeSGLangServer, since SGLang cannot run on
CPU), the plain-OpenAI warning, retries with backoff and the unreachable-server message.
Real vLLM servers are tested in plugins/retrain-vllm/tests."""

from __future__ import annotations

import socket
import warnings

import pytest
from sglang_fake import FakeSGLangServer

from retrain.engines.openai import OpenAIEngine, StaleWeightsError, server_root
from retrain.http_client import JSONClient, ServerUnreachable
from retrain.types import SamplingParams

PARAMS = SamplingParams(n=2, max_tokens=3, temperature=1.0, seed=1)


@pytest.fixture()
def fake():
    server = FakeSGLangServer()
    yield server
    server.close()


def backend(tiny_model, lora_rank: int):
    """The real local trainer on the tiny model (it writes the adapters/weights the server loads)."""
    from retrain.config import config_from_dict
    from retrain.plugins import load_plugins
    from retrain.types import RunContext

    reg = load_plugins()
    cfg = config_from_dict({"model": {"model": str(tiny_model), "lora_rank": lora_rank}})
    return reg.build("backend", "local", ctx=RunContext(config=cfg, registry=reg))


def test_server_root_accepts_both_url_forms():
    assert server_root("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000"
    assert server_root("http://127.0.0.1:8000") == "http://127.0.0.1:8000"


def test_sglang_is_detected_and_generate_reads_native_token_ids(fake):
    engine = OpenAIEngine(url=fake.url + "/v1")
    assert engine.flavour.name == "sglang" and engine.base_model == "tiny-base"
    gen = engine.generate([[2, 10], [2, 20, 21]], PARAMS)
    assert len(gen.completion_ids) == 4 and gen.policy_version == 0  # B=2 x n=2, groups contiguous
    assert gen.logprobs[0] == [-0.5, -0.51, -0.52]
    assert gen.finish_reasons == ["length"] * 4
    # prompts go out concurrently: find the first prompt's request, whichever thread sent it first
    first = next(body for path, body in fake.calls if path == "/generate" and body["input_ids"][0] == [2, 10])
    assert first["input_ids"] == [[2, 10], [2, 10]] and first["return_logprob"] is True
    assert first["sampling_params"]["max_new_tokens"] == 3 and "lora_path" not in first


def test_sglang_lora_sync_is_versioned_and_stale_adapters_raise(fake, tiny_model, tmp_path):
    be = backend(tiny_model, lora_rank=4)
    engine = OpenAIEngine(url=fake.url, flavour="sglang")
    before = engine.generate([[2, 10]], PARAMS)
    engine.sync(be, 1)
    engine.sync(be, 2)
    assert list(fake.adapters) == ["retrain-v2"]  # v1 was unloaded
    after = engine.generate([[2, 10]], PARAMS)
    assert after.policy_version == 2 and after.completion_ids != before.completion_ids
    assert [c for c in fake.calls if c[0] == "/generate"][-1][1]["lora_path"] == ["retrain-v2", "retrain-v2"]
    fake.restart()  # the server lost the adapter: sampling must not silently fall back to the base model
    with pytest.raises(StaleWeightsError, match=r"adapter 'retrain-v2' \(policy version 2\) is not loaded"):
        engine.generate([[2, 10]], PARAMS)


def test_sglang_full_weight_sync_checks_weight_version(fake, tiny_model):
    be = backend(tiny_model, lora_rank=0)
    engine = OpenAIEngine(url=fake.url, flavour="sglang")
    engine.sync(be, 3)
    body = [c for c in fake.calls if c[0] == "/update_weights_from_disk"][-1][1]
    assert body["weight_version"] == "retrain-v3" and body["model_path"].endswith("v3")
    assert engine.generate([[2, 10]], PARAMS).policy_version == 3
    fake.restart()
    with pytest.raises(StaleWeightsError, match="reports weight_version 'default', expected 'retrain-v3'"):
        engine.generate([[2, 10]], PARAMS)


def test_plain_openai_flavour_warns_once_that_training_does_not_reach_the_server(fake, tiny_model):
    engine = OpenAIEngine(url=fake.url, flavour="openai")
    assert engine.syncs_weights is False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine.sync(object(), 1)
        engine.sync(object(), 2)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "training does not reach the sampler" in msgs[0]
    assert engine.version == 2


def test_retries_with_backoff_then_succeeds(fake):
    fake.fail_next = 2
    client = JSONClient(fake.url, retries=2, backoff=0.01)
    assert client.get("/get_model_info")["model_path"] == "tiny-base"


def test_unreachable_server_message_says_what_to_do():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    client = JSONClient(f"http://127.0.0.1:{port}", retries=1, backoff=0.01)
    with pytest.raises(ServerUnreachable, match=r"did not answer GET /v1/models after 2 attempt\(s\).*"
                                                r"Check that the server is running.*--resume latest"):
        client.get("/v1/models")


def test_missing_url_is_a_config_error():
    from retrain.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[inference\] url is empty: the openai engine needs a server"):
        OpenAIEngine(url="")
