"""3-step training runs through the real loop with each vLLM path: in-process, managed server (one-step-off:
``[training] max_staleness = 1``), and the core openai engine against a vLLM server. Engine and trainer must
agree after every sync."""

from __future__ import annotations

from pathlib import Path

import pytest
from vllm_helpers import make_ctx

from retrain.config import config_from_dict
from retrain.plugins import load_plugins
from retrain.testing import read_metrics, toy_config


def run_config(model: Path, log_dir: Path, name: str, inference: dict, vllm: dict | None = None,
               lora_rank: int = 4, max_staleness: int = 0) -> dict:
    return toy_config(model, log_dir, run_name=name, model={"lora_rank": lora_rank},
                      training={"max_steps": 3, "max_tokens": 8, "lr": 0.05, "max_staleness": max_staleness},
                      reward={"workers": 1},
                      inference=inference, **({"vllm": vllm} if vllm is not None else {}))


def train(data: dict) -> list[dict]:
    from retrain.train.runner import train as run

    reg = load_plugins()
    cfg = config_from_dict(data, source="run.toml", plugin_sections=reg.plugin_sections())
    run_dir = run(cfg, reg)
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
    return rows


def assert_on_policy(rows: list[dict]) -> None:
    for r in rows:  # the engine sampled from exactly the trainer's weights at every step
        assert r["mismatch/abs_logprob_delta"] < 1e-4, r
        assert abs(r["mismatch/kl"]) < 1e-5, r
        assert r["loss/policy"] == r["loss/policy"]  # finite


def test_three_steps_in_process_full_fine_tuning(vllm_model, tmp_path):
    """lora_rank = 0: every sync reloads all weights in place (LoRA in-process: test_inprocess.py)."""
    rows = train(run_config(vllm_model, tmp_path, "inproc", {"engine": "vllm"}, {"max_model_len": 128},
                            lora_rank=0))
    assert_on_policy(rows)


def test_three_steps_managed_server_one_step_off(vllm_model, tmp_path):
    """max_staleness = 1: batches 2 and 3 are sampled while the step before trains, from the adapter one version
    behind; each sync's probe still checks that the server then serves exactly the trainer's new weights."""
    rows = train(run_config(vllm_model, tmp_path, "server", {"engine": "vllm"},
                            {"mode": "server", "max_model_len": 128}, max_staleness=1))
    behind = [r["staleness/trainer_version"] - r["staleness/policy_version"] for r in rows]
    assert behind == [0, 1, 1] and [r["staleness/trainer_version"] for r in rows] == [0, 1, 2]
    assert_on_policy(rows[:1])
    for r in rows[1:]:  # sampled from the previous adapter (lr 0.05 moves it): trained with the importance weight
        assert r["mismatch/abs_logprob_delta"] > 1e-3, r
        assert r["loss/policy"] == r["loss/policy"]


def test_three_steps_openai_engine_against_vllm_server(vllm_model, tmp_path):
    ctx = make_ctx(vllm_model, tmp_path / "server", inference={"engine": "vllm"},
                   vllm={"mode": "server", "max_model_len": 128})
    server = ctx.registry.build("engine", "vllm", ctx=ctx)
    try:
        rows = train(run_config(vllm_model, tmp_path, "openai", {"engine": "openai", "url": server.url,
                                                                  "flavour": "auto"}))
    finally:
        server.close()
    assert_on_policy(rows)
