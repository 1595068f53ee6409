"""Data-parallel runs on CPU (gloo, real torchrun processes) equal one process, and resume across world sizes.

One global batch (B = 4 prompts x G = 4 samples) per step, 3 steps, the tiny random model, LoRA
and full fine-tuning. "W = 1" is the same code under a one-process process group (in this pytest
process); "W = 2" is ``retrain RUN.toml`` with ``[backend] devices = "cpu:2"``, which re-executes
itself under torchrun. Tolerance: 1e-5 relative (+1e-6 absolute) on every metric except the wall
clock and the memory high-water marks (time/*, throughput/*, memory/*): the two runs differ only in the order of floating-point sums
(per-rank partial sums, the gradient all-reduce of the replicated LoRA adapter or FSDP's
reduce-scatter). LoRA runs take the replicated-adapter path by default and FSDP2 with
``RETRAIN_LORA_FSDP=1``; checkpoints move between the two.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from retrain.testing import read_metrics, write_toy_config
from retrain.testing.runs import VOLATILE_METRICS

HERE = Path(__file__).parent
RTOL, ATOL = 1e-5, 1e-6
STEPS = 3


def write_config(tmp: Path, model: Path, name: str, devices: str, lora_rank: int, micro_batch: int = 0) -> Path:
    return write_toy_config(
        tmp / f"{name}.toml", model, tmp / "runs", run_name=name,
        backend={"devices": devices, "micro_batch_size": micro_batch},
        model={"lora_rank": lora_rank, "lora_alpha": 2 * lora_rank or 16}, algorithm={"advantage_mode": "grpo"},
        training={"max_steps": STEPS, "batch_size": 4, "max_tokens": 8, "save_every": 1, "keep_checkpoints": 3,
                  "lr": 1e-2 if lora_rank else 1e-3},
        reward={"type": "parity_reward.ParityReward"})


def run_cli(config: Path, *extra: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", **(env_extra or {}))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    proc = subprocess.run([sys.executable, "-m", "retrain.cli.main", str(config), *extra], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def run_one_process(config: Path, monkeypatch: pytest.MonkeyPatch, port: int, resume: str | None = None) -> Path:
    """The W = 1 run: this process joins a one-rank gloo group (what torchrun --nproc-per-node 1 does)."""
    from retrain.run_config import load_run_config
    from retrain.train.runner import train

    monkeypatch.syspath_prepend(str(HERE))
    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(k, v)
    cfg, reg = load_run_config(config, {"backend.devices": "cpu"})
    return train(cfg, reg, config_path=config, resume=resume)


def assert_rows_equal(a: list[dict], b: list[dict]) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        keys = {k for k in ra if not k.startswith(VOLATILE_METRICS)}
        assert keys == {k for k in rb if not k.startswith(VOLATILE_METRICS)}
        for k in sorted(keys):
            assert math.isclose(ra[k], rb[k], rel_tol=RTOL, abs_tol=ATOL), (ra["step"], k, ra[k], rb[k])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_and_a_two_rank_checkpoint_resumes_on_one(tiny_model, tmp_path, monkeypatch):
    """LoRA: W = 2 (torchrun, 2 micro-batches per rank) == W = 1 (one micro-batch) row for row; step 2 saved by
    2 ranks resumes on 1 rank (and in a plain run)."""
    two = write_config(tmp_path, tiny_model, "w2", "cpu:2", lora_rank=4, micro_batch=4)  # 2 micro-batches a rank
    proc = run_cli(two)
    assert "launching 2 processes" in proc.stderr
    assert "distributed: LoRA replicated, one gradient all-reduce per step" in proc.stderr
    w2 = read_metrics(tmp_path / "runs" / "w2")

    one = write_config(tmp_path, tiny_model, "w1", "cpu", lora_rank=4)
    w1 = read_metrics(run_one_process(one, monkeypatch, free_port()))
    assert_rows_equal(w2, w1)
    assert len({r["reward/mean"] for r in w1}) > 1 and all(r["adv/mean_abs"] > 0 for r in w1)
    assert all(r["train/grad_norm"] > 0 for r in w1)
    assert w1[0]["loss/ratio_mean"] == pytest.approx(1.0, abs=1e-5)  # on-policy: the replica samples as the trainer

    ckpt = tmp_path / "runs" / "w2" / "checkpoints" / "step_2"
    assert json.loads((ckpt / "meta.json").read_text())["world_size"] == 2
    assert (ckpt / "backend" / "dcp").is_dir()
    resumed = run_one_process(one, monkeypatch, free_port(), resume=str(ckpt))
    assert_rows_equal(read_metrics(resumed), w1)  # rows 1-2 kept, row 3 recomputed from the 2-rank checkpoint

    # an ordinary one-process run (no process group) loads the DCP checkpoint too
    from retrain.run_config import load_run_config
    from retrain.train.runner import train

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k)
    cfg, reg = load_run_config(one, {"backend.devices": "cpu"})
    plain = read_metrics(train(cfg, reg, config_path=one, resume=str(ckpt)))
    assert [r["step"] for r in plain] == [1, 2, 3] and plain[2]["train/grad_norm"] > 0


def test_lora_under_fsdp2_equals_one_process_and_its_checkpoint_resumes_with_the_replicated_adapter(
        tiny_model, tmp_path, monkeypatch):
    """LoRA through FSDP2 (RETRAIN_LORA_FSDP=1, the path before the replicated adapter) == W = 1, and its
    2-rank step-1 checkpoint resumes on 2 ranks with the replicated adapter (the default) to the same rows."""
    one = write_config(tmp_path, tiny_model, "w1", "cpu", lora_rank=4)
    w1 = read_metrics(run_one_process(one, monkeypatch, free_port()))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k)
    two = write_config(tmp_path, tiny_model, "w2", "cpu:2", lora_rank=4, micro_batch=4)
    proc = run_cli(two, env_extra={"RETRAIN_LORA_FSDP": "1"})
    assert "distributed: FSDP2" in proc.stderr
    assert_rows_equal(read_metrics(tmp_path / "runs" / "w2"), w1)
    proc = run_cli(two, "--resume", str(tmp_path / "runs" / "w2" / "checkpoints" / "step_1"))
    assert "distributed: LoRA replicated" in proc.stderr
    assert_rows_equal(read_metrics(tmp_path / "runs" / "w2"), w1)


def test_a_one_process_checkpoint_resumes_on_two_ranks_full_weights(tiny_model, tmp_path, monkeypatch):
    """Full fine-tuning: step 1 saved by 1 rank, steps 2-3 on 2 ranks (torchrun) == the straight 1-rank run."""
    one = write_config(tmp_path, tiny_model, "w1", "cpu", lora_rank=0)
    w1 = read_metrics(run_one_process(one, monkeypatch, free_port()))
    assert len({r["reward/mean"] for r in w1}) > 1
    two = write_config(tmp_path, tiny_model, "w1", "cpu:2", lora_rank=0)  # same run name: resume into it
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k)
    run_cli(two, "--resume", str(tmp_path / "runs" / "w1" / "checkpoints" / "step_1"))
    resumed = read_metrics(tmp_path / "runs" / "w1")
    assert_rows_equal(resumed, w1)
    meta = json.loads((tmp_path / "runs" / "w1" / "checkpoints" / "step_3" / "meta.json").read_text())
    assert meta["world_size"] == 2
