"""[algorithm] loss_agg under data parallelism: the per-sequence and per-micro-batch aggregations
count rows and micro-batches over all ranks, so 2 torchrun processes (gloo, CPU) equal 1 process
with the same micro-batches, metric for metric (tolerances of test_equivalence.py)."""

from __future__ import annotations

import pytest
from retrain.testing import read_metrics, write_toy_config
from test_equivalence import assert_rows_equal, free_port, run_cli, run_one_process


@pytest.mark.parametrize("loss_agg", ["seq_mean_token_mean", "micro_token_mean"])
def test_two_ranks_equal_one_process(loss_agg, tiny_model, tmp_path, monkeypatch):
    def config(name: str, devices: str):
        # 16 rows a step in micro-batches of 4: ranks hold rows 0-7 and 8-15, one process all 16;
        # the micro-batches are the same rows either way
        return write_toy_config(
            tmp_path / f"{name}.toml", tiny_model, tmp_path / "runs", run_name=name,
            backend={"devices": devices, "micro_batch_size": 4}, model={"lora_rank": 4, "lora_alpha": 8},
            algorithm={"advantage_mode": "grpo", "loss_agg": loss_agg},
            training={"max_steps": 1, "batch_size": 4, "max_tokens": 8, "save_every": 0, "lr": 1e-2},
            reward={"type": "parity_reward.ParityReward"})

    run_cli(config("w2", "cpu:2"))
    w2 = read_metrics(tmp_path / "runs" / "w2")
    w1 = read_metrics(run_one_process(config("w1", "cpu"), monkeypatch, free_port()))
    assert_rows_equal(w2, w1)
    # counting only one rank's rows or micro-batches would double the gradient: the norms must agree
    assert all(r["train/grad_norm"] > 0 for r in w1)
