"""[backpressure] enabled: the loop generates in controller-sized chunks of whole groups, logs the
controller, and keeps its state across --resume."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from retrain.config import load_config
from retrain.plugins import load_plugins
from retrain.train.runner import train


def config(tmp_path: Path, model: Path, steps: int) -> Path:
    path = tmp_path / "bp.toml"
    path.write_text(textwrap.dedent(f"""
        [model]
        model = "{model}"
        lora_rank = 0
        [training]
        max_steps = {steps}
        batch_size = 4
        group_size = 4
        max_tokens = 4
        save_every = 1
        [data]
        source = "retrain.testing.toy.CopyDigitEnv"
        prompt_template = "{{problem}}"
        [reward]
        type = "retrain.testing.toy.FirstCharReward"
        [backpressure]
        enabled = true
        min_batch = 4
        max_batch = 16
        warmup_probes = 2
        [logging]
        log_dir = "{tmp_path / 'runs'}"
        loggers = ["jsonl"]
        [eval]
        at_start = false
        at_end = false
    """))
    return path


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_loop_uses_and_checkpoints_the_controller(tmp_path: Path, tiny_model: Path) -> None:
    import torch

    path = config(tmp_path, tiny_model, steps=2)
    run_dir = train(load_config(path), load_plugins(), config_path=path)
    first = rows(run_dir)
    assert [r["step"] for r in first] == [1, 2]
    assert all(4 <= r["backpressure/batch"] <= 16 for r in first)
    assert "backpressure/sigma" not in first[0] and "backpressure/sigma" in first[1]  # fit after warm-up probes

    def observations(step: int) -> list:
        state = torch.load(run_dir / "checkpoints" / f"step_{step}" / "state.pt", weights_only=False)
        return state["extra"]["backpressure"]["observations"]

    before = observations(2)
    assert {p for p, _ in before} >= {4, 8}  # probed distinct concurrencies, in whole groups of 4
    train(load_config(path, {"training.max_steps": 3}), load_plugins(), config_path=path, resume=str(run_dir))
    after = observations(3)
    assert after[:len(before)] == before and len(after) > len(before)  # state restored, then extended
