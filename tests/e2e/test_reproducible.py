"""Same seed, same machine, same thread count: two runs (separate processes, as a user runs them)
give identical metrics, samples and weights; another seed does not (docs/training.md, Reproducibility)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from retrain.config import load_config
from retrain.plugins import load_plugins
from retrain.testing.runs import read_metrics, read_samples, write_toy_config
from retrain.train.runner import train
from safetensors.torch import load_file

from retrain.testing.runs import VOLATILE_METRICS as VOLATILE
SECTIONS = {"model": {"lora_rank": 4}, "backend": {"autocast": "bfloat16", "threads": 1},
            "training": {"max_steps": 2, "lr": 5e-2, "temperature": 1.0}}


def _run(cfg, seed: int):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "retrain.cli.main", str(cfg), "--seed", str(seed)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = cfg.parent / "runs" / cfg.stem
    metrics = [{k: v for k, v in row.items() if not k.startswith(VOLATILE)} for row in read_metrics(run_dir)]
    adapter = load_file(str(next((run_dir / "checkpoints").rglob("adapter_model.safetensors"))))
    return metrics, read_samples(run_dir), adapter, json.loads((run_dir / "numerics.json").read_text())


def test_two_runs_with_the_same_seed_are_identical(tiny_model, tmp_path):
    for name in "abc":
        (tmp_path / name).mkdir()
    first = _run(write_toy_config(tmp_path / "a" / "a.toml", tiny_model, run_name="a", **SECTIONS), 7)
    second = _run(write_toy_config(tmp_path / "b" / "b.toml", tiny_model, run_name="b", **SECTIONS), 7)
    # and the comparison can fail: another seed (in this process, which is cheaper) samples other completions
    other_cfg = write_toy_config(tmp_path / "c" / "c.toml", tiny_model, run_name="c", **SECTIONS)
    threads = torch.get_num_threads()
    try:
        other_dir = train(load_config(other_cfg, {"training.seed": 8}), load_plugins(), config_path=other_cfg)
    finally:
        torch.set_num_threads(threads)
    metrics, samples, adapter, numerics = first
    assert [r["step"] for r in metrics] == [1, 2]
    assert metrics == second[0]  # every logged number, exactly
    assert samples == second[1]  # every sampled completion
    assert adapter.keys() == second[2].keys() and all(torch.equal(adapter[k], second[2][k]) for k in adapter)
    assert numerics == second[3] and numerics["torch_threads"] == 1 and numerics["autocast"] == "bfloat16"
    assert read_samples(other_dir) != samples
