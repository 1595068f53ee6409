"""benchmarks/addition_anchor: the anchor loop and retrain's recipe run end to end (tiny, CPU), and the
bf16 full-fine-tuning trap fails loudly instead of training nothing."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest
import torch

ANCHOR = Path(__file__).resolve().parents[2] / "benchmarks" / "addition_anchor" / "anchor.py"


def _anchor():
    spec = importlib.util.spec_from_file_location("anchor", ANCHOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_held_out_pairs_are_never_trained_on():
    train, held = _anchor().pairs(128)
    assert len(held) == 128 and len(train) == 90 * 90 - 128 and not set(train) & set(held)
    assert all(10 <= a <= 99 and 10 <= b <= 99 for a, b in held)


def test_tiny_mode_runs_both_loops(tmp_path, monkeypatch):
    anchor = _anchor()
    monkeypatch.setattr("tempfile.mkdtemp", lambda prefix="": str(tmp_path))
    out = tmp_path / "result.json"
    result = anchor.main(["--tiny", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["steps"] == 2 and (result["B"], result["G"], result["tokens"]) == (4, 4, 8)
    for side in ("anchor", "retrain"):
        assert 0.0 <= result[side]["before"] <= 1.0 and 0.0 <= result[side]["after"] <= 1.0
        assert result[side]["train_seconds"] > 0
    # retrain evaluated exactly the anchor's held-out pairs, with the anchor's user message
    _, held = anchor.pairs(8)
    report = json.loads((tmp_path / "runs" / "retrain" / "eval" / "step_2.json").read_text())
    assert [p["answer"] for p in report["problems"]] == [str(a + b) for a, b in held]
    a, b = held[0]
    assert report["problems"][0]["prompt"] == [{"role": "user", "content": f"What is {a} + {b}? Put the final answer in \\boxed{{}}."}]


def test_tiny_parity_runs_both_schedules_with_the_same_seeds(tmp_path, monkeypatch):
    anchor = _anchor()
    monkeypatch.setattr("tempfile.mkdtemp", lambda prefix="": str(tmp_path))
    result = anchor.main(["--tiny", "--parity", "3"])
    assert [(r["max_staleness"], r["seed"]) for r in result["runs"]] == [(0, 3), (1, 3)]
    rows = [json.loads(line) for line in (tmp_path / "runs" / "staleness1-s3" / "metrics.jsonl").read_text().splitlines()]
    behind = [r["staleness/mean"] for r in rows if "staleness/mean" in r]
    assert behind and max(behind) <= 1.0 and behind[-1] == 1.0  # step 2 trained on a batch sampled from version 0


def _config(path: Path, model: Path, log_dir: Path, dtype: str, lr: float) -> Path:
    path.write_text(textwrap.dedent(f"""
        [model]
        model = "{model}"
        lora_rank = 0
        [backend]
        dtype = "{dtype}"
        [training]
        max_steps = 1
        batch_size = 2
        group_size = 2
        max_tokens = 4
        lr = {lr}
        [data]
        source = "retrain.testing.toy.CopyDigitEnv"
        prompt_template = "{{problem}}"
        [reward]
        type = "retrain.testing.toy.FirstCharReward"
        [logging]
        log_dir = "{log_dir}"
        loggers = ["jsonl"]
        [eval]
        at_start = false
        at_end = false
    """))
    return path


def test_full_finetuning_of_bf16_weights_at_a_small_lr_fails_loudly(tiny_model, tmp_path):
    from retrain.config import load_config
    from retrain.errors import ConfigError
    from retrain.plugins import load_plugins
    from retrain.train.runner import train

    torch.set_num_threads(1)
    cfg = _config(tmp_path / "bf16.toml", tiny_model, tmp_path / "runs", "bfloat16", 5e-6)
    with pytest.raises(ConfigError) as err:
        train(load_config(cfg), load_plugins(), config_path=cfg)
    msg = str(err.value)
    assert msg.startswith(f'{cfg} [backend] dtype = "bfloat16": full fine-tuning of bfloat16 weights at [training] lr = 5e-06')
    assert "rounds away" in msg and 'Use [backend] dtype = "float32"' in msg
    # the tiny model's weights (std 0.02): an update of 5e-6 is lost wherever |w| > 5e-6 * 256 = 1.3e-3,
    # i.e. for about 95% of them; at lr 1e-2 every update survives and the run trains
    cfg = _config(tmp_path / "ok.toml", tiny_model, tmp_path / "runs", "bfloat16", 1e-2)
    run_dir = train(load_config(cfg), load_plugins(), config_path=cfg)
    assert (run_dir / "metrics.jsonl").read_text().count('"step": 1') == 1


def test_auto_dtype_is_fp32_for_full_finetuning_on_gpu():
    from retrain.backends.local import resolve_dtype

    assert resolve_dtype("auto", "cuda") == torch.bfloat16  # LoRA on GPU: bf16 base weights, fp32 adapters
    assert resolve_dtype("auto", "cuda", full_finetune=True) == torch.float32
    assert resolve_dtype("auto", "cpu", full_finetune=False) == torch.float32
