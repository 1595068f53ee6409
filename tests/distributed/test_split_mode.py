"""Split mode under torchrun: 2 trainer ranks, one OpenAI-compatible server, one weight push per step.

The server is tests/core's FakeSGLangServer (SGLang cannot run on CPU; real vLLM servers are
tested in plugins/retrain-vllm/tests): it records every request, so the test sees who pushed what.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from retrain.testing import read_metrics, write_toy_config

sys.path.insert(0, str(Path(__file__).parents[1] / "core"))
from sglang_fake import FakeSGLangServer  # noqa: E402
from test_equivalence import run_cli  # noqa: E402


@pytest.fixture()
def fake():
    server = FakeSGLangServer()
    yield server
    server.close()


def test_two_ranks_share_the_prompts_and_only_rank_0_pushes_the_adapter(fake, tiny_model, tmp_path):
    config = write_toy_config(
        tmp_path / "split.toml", tiny_model, tmp_path / "runs", run_name="split",
        backend={"devices": "cpu:2"}, model={"lora_rank": 4},
        inference={"engine": "openai", "url": f"{fake.url}/v1", "flavour": "sglang"},
        training={"max_steps": 2, "batch_size": 4, "group_size": 2, "seed": 3},
        reward={"type": "parity_reward.ParityReward"})
    run_cli(config)
    pushes = [body["lora_name"] for path, body in fake.calls if path == "/load_lora_adapter"]
    assert pushes == ["retrain-v1", "retrain-v2"]  # once per step, not once per rank
    generates = [body for path, body in fake.calls if path == "/generate"]
    assert len(generates) == 2 * 4  # B = 4 prompts per step, split over the ranks, each sent once
    from retrain.train.loop import step_seed

    # per-prompt seeds keyed by the global prompt index: what one process would send
    expected = {(step_seed(3, 1) * 100_003 + i * 2) % 2**31 for i in range(4)}
    assert {g["sampling_params"]["sampling_seed"] for g in generates[:4]} == expected
    assert {tuple(g.get("lora_path") or ()) for g in generates[4:]} == {("retrain-v1", "retrain-v1")}
    metrics = read_metrics(tmp_path / "runs" / "split")
    assert [r["step"] for r in metrics] == [1, 2] and metrics[0]["train/tokens"] == 4 * 2 * 4
    assert json.loads((tmp_path / "runs" / "split" / "plugins.json").read_text())  # rank 0 wrote the run dir
