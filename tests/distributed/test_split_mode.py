"""Split mode under torchrun: 2 trainer ranks, one OpenAI-compatible server, one weight push per step.

The server is tests/core's FakeSGLangServer (SGLang cannot run on CPU; real vLLM servers are
tested in tests/vllm): it records every request, so the test sees who pushed what.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "core"))
from sglang_fake import FakeSGLangServer  # noqa: E402
from test_equivalence import rows, run_cli  # noqa: E402


@pytest.fixture()
def fake():
    server = FakeSGLangServer()
    yield server
    server.close()


def test_two_ranks_share_the_prompts_and_only_rank_0_pushes_the_adapter(fake, tiny_model, tmp_path):
    config = tmp_path / "split.toml"
    config.write_text(textwrap.dedent(f"""
        [backend]
        devices = "cpu:2"
        [model]
        model = "{tiny_model}"
        lora_rank = 4
        [inference]
        engine = "openai"
        url = "{fake.url}/v1"
        flavour = "sglang"
        [training]
        max_steps = 2
        batch_size = 4
        group_size = 2
        max_tokens = 4
        save_every = 0
        seed = 3
        [data]
        source = "retrain.testing.toy.CopyDigitEnv"
        prompt_template = "{{problem}}"
        [reward]
        type = "parity_reward.ParityReward"
        [logging]
        log_dir = "{tmp_path / 'runs'}"
        run_name = "split"
        loggers = ["jsonl"]
        [eval]
        at_start = false
        at_end = false
        """))
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
    metrics = rows(tmp_path / "runs" / "split")
    assert [r["step"] for r in metrics] == [1, 2] and metrics[0]["train/tokens"] == 4 * 2 * 4
    assert json.loads((tmp_path / "runs" / "split" / "plugins.json").read_text())  # rank 0 wrote the run dir
