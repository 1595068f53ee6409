"""``[inference] device``: the pytorch engine samples from a full copy of the policy on a device of its own
(split mode in one process), refreshed at every sync. On CPU the copy sits on the same device, which still
runs all of it but the cross-GPU copy: a run samples what the run without it samples and trains the same to
float rounding; one-step-off keeps its one version of staleness; the config refuses what cannot work, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from retrain.config import load_config
from retrain.errors import ConfigError
from retrain.plugins import load_plugins
from retrain.testing.runs import read_metrics, read_samples, write_toy_config
from retrain.train.parts import build_parts, close_parts
from retrain.train.runner import train
from retrain.types import RunContext

from retrain.testing.runs import VOLATILE_METRICS as VOLATILE


def config(tmp_path: Path, model: Path, name: str, *, lora_rank: int = 4, staleness: int = 0,
           **inference: str) -> Path:
    """Copy-digit, 10 prompts x 32 samples x 1 token per step, grpo (as tests/e2e/test_async.py)."""
    return write_toy_config(tmp_path / f"{name}.toml", model, tmp_path / "runs", run_name=name,
                            model={"lora_rank": lora_rank}, algorithm={"advantage_mode": "grpo"},
                            inference=inference,
                            training={"max_steps": 3, "batch_size": 10, "group_size": 32, "max_tokens": 1,
                                      "lr": 4e-3, "seed": 3, "max_staleness": staleness})


def run(path: Path) -> Path:
    return train(load_config(path), load_plugins(), config_path=path)


def stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows]


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_sampling_from_a_copy_on_its_own_device_trains_exactly_as_from_the_trainers_weights(tiny_model, tmp_path,
                                                                                            lora_rank):
    """The same completions and the same training to float rounding: the copy's weights are equal bit for bit, but
    a GEMM over other addresses may round differently (the engine-trainer gap is 8e-8 nats here, 0 without it)."""
    own = run(config(tmp_path, tiny_model, "own", lora_rank=lora_rank))
    split = run(config(tmp_path, tiny_model, "split", lora_rank=lora_rank, device="cpu"))
    assert read_samples(split) == read_samples(own)
    rows, expected = stable(read_metrics(split)), stable(read_metrics(own))
    assert [r.keys() - {"sync/logprob_gap"} for r in rows] == [r.keys() for r in expected]
    for r, e in zip(rows, expected, strict=True):
        assert r["mismatch/abs_logprob_delta"] < 1e-6 and r["sync/logprob_gap"] < 1e-5, r  # the copy is probed
        for k in ("train/grad_norm", "entropy/mean", "reward/mean", "adv/mean_abs"):
            assert r[k] == pytest.approx(e[k], rel=1e-4), k


def test_the_copy_holds_every_weight_apart_and_each_sync_refreshes_the_trained_ones(tiny_model, tmp_path):
    path = config(tmp_path, tiny_model, "parts", device="cpu")
    parts = build_parts(RunContext(config=load_config(path), registry=load_plugins(), config_path=path))
    try:
        engine, model = parts.engine, parts.backend.model
        mine, copy = dict(model.named_parameters()), dict(engine.snapshot.named_parameters())
        assert mine.keys() == copy.keys()
        for name, p in mine.items():  # the frozen base too: on another GPU it could not be shared
            assert copy[name].data_ptr() != p.data_ptr() and torch.equal(copy[name], p), name
        lora = next(n for n, p in mine.items() if p.requires_grad)
        with torch.no_grad():
            mine[lora].add_(1.0)  # what an optimizer step does to the trainer's weights
        assert not torch.equal(copy[lora], mine[lora])  # the copy samples from the synced version ...
        engine.sync(parts.backend, 1)
        assert torch.equal(copy[lora], mine[lora]) and engine.version == 1  # ... until the next sync
        engine.sample_from_snapshot()  # the one-step-off schedule asks for a copy: the one it has is kept
        assert dict(engine.snapshot.named_parameters())[lora] is copy[lora]
    finally:
        close_parts(parts)


def test_one_step_off_with_a_sampling_device_stays_one_version_behind(tiny_model, tmp_path):
    rows = read_metrics(run(config(tmp_path, tiny_model, "async", staleness=1, device="cpu")))
    assert [r["staleness/trainer_version"] - r["staleness/policy_version"] for r in rows] == [0, 1, 1]
    assert all(r["loss/policy"] == r["loss/policy"] for r in rows)


@pytest.mark.parametrize(("inference", "backend", "message"), [
    ({"engine": "openai", "url": "http://127.0.0.1:9/v1", "device": "gpu:1"}, {},
     '[inference] device = "gpu:1": only the pytorch engine samples in-process; engine "openai" samples where its '
     "server runs. Remove [inference] device."),
    ({"device": "gpu:0,1"}, {}, '[inference] device = "gpu:0,1": expected one device, gpu:I (or cuda:I) or cpu.'),
    ({"device": "gpo:1"}, {}, '[inference] device = "gpo:1": expected one device, gpu:I (or cuda:I) or cpu. '
                              'Did you mean "gpu"?'),
    ({"device": "cpu"}, {"devices": "cpu:2"}, '[inference] device = "cpu" with [backend] devices = "cpu:2" (2 '
                                              "processes): each rank already samples from a full replica of its "
                                              "own; remove [inference] device."),
])
def test_a_sampling_device_that_cannot_work_is_one_line_when_the_config_loads(tiny_model, tmp_path, inference,
                                                                              backend, message):
    path = write_toy_config(tmp_path / "bad.toml", tiny_model, inference=inference, backend=backend)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: {message}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the trainer would run on the GPU here")
def test_a_gpu_for_sampling_beside_a_cpu_trainer_is_refused_when_the_run_starts(tiny_model, tmp_path):
    path = config(tmp_path, tiny_model, "gpu", device="gpu:1")
    with pytest.raises(ConfigError) as e:
        run(path)
    assert str(e.value) == (f'{path} [inference] device = "gpu:1" is a cuda device and the trainer runs on cpu: the engine '
                            "computes like the trainer only on the same kind of device; name a cpu device, or use a "
                            "server engine (openai, vllm) for other hardware.")
