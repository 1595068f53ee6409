"""[backpressure] enabled: the loop generates in controller-sized chunks of whole groups, logs the
controller, and keeps its state across --resume."""

from __future__ import annotations

from pathlib import Path

from retrain.config import load_config
from retrain.plugins import load_plugins
from retrain.testing import read_metrics, write_toy_config
from retrain.train.runner import train


def config(tmp_path: Path, model: Path, steps: int) -> Path:
    return write_toy_config(tmp_path / "bp.toml", model, tmp_path / "runs",
                            training={"max_steps": steps, "batch_size": 4, "save_every": 1},
                            backpressure={"enabled": True, "min_batch": 4, "max_batch": 16, "warmup_probes": 2})


def test_loop_uses_and_checkpoints_the_controller(tmp_path: Path, tiny_model: Path) -> None:
    from retrain.train.checkpoint import load_data

    path = config(tmp_path, tiny_model, steps=2)
    run_dir = train(load_config(path), load_plugins(), config_path=path)
    first = read_metrics(run_dir)
    assert [r["step"] for r in first] == [1, 2]
    assert all(4 <= r["backpressure/batch"] <= 16 for r in first)
    assert "backpressure/sigma" not in first[0] and "backpressure/sigma" in first[1]  # fit after warm-up probes

    def observations(step: int) -> list:
        state = load_data(run_dir / "checkpoints" / f"step_{step}" / "state.pt")  # as retrain reads it
        return state["extra"]["backpressure"]["observations"]

    before = observations(2)
    assert {p for p, _ in before} >= {4, 8}  # probed distinct concurrencies, in whole groups of 4
    train(load_config(path, {"training.max_steps": 3}), load_plugins(), config_path=path, resume=str(run_dir))
    after = observations(3)
    assert after[:len(before)] == before and len(after) > len(before)  # state restored, then extended
