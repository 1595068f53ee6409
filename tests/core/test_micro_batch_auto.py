"""``micro_batch_size = "auto"`` on a GPU (retrain.backends.micro_batch): the whole batch when its activations fit,
else the most rows that do. The estimate's numbers are checked by hand; the GPU path itself runs only on a GPU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from retrain.backends.micro_batch import BUDGET_FRACTION, activation_bytes_per_token, even_slices, rows_that_fit

QWEN_05B = SimpleNamespace(num_hidden_layers=24, hidden_size=896, intermediate_size=4864)
SMOLLM2_135M = SimpleNamespace(num_hidden_layers=30, hidden_size=576, intermediate_size=1536)
H100_FREE = 78 * 2**30


def test_activation_bytes_per_token_by_hand():
    assert activation_bytes_per_token(QWEN_05B, 2) == 24 * (18 * 896 + 6 * 4864) * 2 == 2_174_976
    assert activation_bytes_per_token(SMOLLM2_135M, 2) == 30 * (18 * 576 + 6 * 1536) * 2 == 1_175_040
    assert activation_bytes_per_token(SimpleNamespace(num_hidden_layers=2, hidden_size=8), 4) == 2 * (144 + 192) * 4
    assert activation_bytes_per_token(None, 2) == 0  # no sizes: no estimate


def test_long_rows_of_a_half_billion_model_are_split_where_they_ran_out_of_memory():
    budget = BUDGET_FRACTION * H100_FREE  # 67.0e9 bytes
    # 128 rows of 128 + 1,024 tokens: 67.0e9 // (2,174,976 x 1,152 = 2.51e9) = 26 rows (32 ran out of memory on an H100)
    assert rows_that_fit(128, 1152, 2_174_976, budget) == 26
    # 256-token completions: 67.0e9 // (2,174,976 x 384) = 80 rows
    assert rows_that_fit(128, 384, 2_174_976, budget) == 80


def test_the_default_run_trains_its_whole_batch_on_a_gpu():
    # 128 rows x (145 prompt + 24 completion) tokens x 1,175,040 B = 23.7 GiB < 62.4 GiB: one micro-batch
    assert rows_that_fit(128, 169, 1_175_040, BUDGET_FRACTION * H100_FREE) == 128


def test_at_least_one_row_and_no_estimate_means_the_whole_batch():
    assert rows_that_fit(64, 100_000, 2_174_976, 1e9) == 1  # nothing fits: one row at a time, the least there is
    assert rows_that_fit(64, 100, 0, 1e9) == 64


def test_auto_rows_are_split_evenly():
    """128 rows that fit 25 at a time: 6 micro-batches of 21-22 rows (not 5 x 25 + 3), covering every row once."""
    sizes = [s.stop - s.start for s in even_slices(128, 25)]
    assert sizes == [21, 21, 22, 21, 21, 22]
    assert [s.stop - s.start for s in even_slices(8, 3)] == [2, 3, 3]
    assert even_slices(7, 100) == [slice(0, 7)] and len(even_slices(5, 1)) == 5
    cover = [i for s in even_slices(128, 25) for i in range(s.start, s.stop)]
    assert cover == list(range(128))


def test_the_backend_sizes_its_micro_batches_from_the_estimate_each_step(tiny_model, monkeypatch):
    """The GPU branch of ``LocalBackend._train_step`` run on the CPU: the device's available memory is the one
    stand-in (``available_bytes`` reads CUDA). Room for exactly 3 rows of this batch's width gives micro-batches
    of 2, 3 and 3 rows (at most 3) and the same step as one whole batch, up to float summation order."""
    import torch

    from retrain.backends import micro_batch
    from retrain.backends.local import LocalBackend
    from retrain.config import config_from_dict
    from retrain.engines.pytorch import PytorchEngine
    from retrain.types import Rollouts, RunContext, SamplingParams, Task

    def build():
        cfg = config_from_dict({"model": {"model": str(tiny_model), "lora_rank": 4}, "training": {"lr": 1e-2}})
        ctx = RunContext(config=cfg, registry=None)
        torch.manual_seed(0)
        ctx.backend = LocalBackend(ctx=ctx, devices="cpu", micro_batch_size=0)
        return ctx.backend, PytorchEngine(ctx=ctx)

    results = []
    for auto in (False, True):
        backend, engine = build()
        prompts = [backend.tokenizer.encode(x) for x in ("1 2 3", "4 5 6 7")]
        gen = engine.generate(prompts, SamplingParams(n=4, max_tokens=6, temperature=0.7, seed=5))
        r = Rollouts.from_generation([Task(prompt=str(i), answer="") for i in range(2)], prompts, gen, 4)  # [8, T]
        width = max(len(p) for p in prompts) + r.mask.shape[1]
        per_token = activation_bytes_per_token(backend.model.config, backend.dtype.itemsize)
        monkeypatch.setattr(micro_batch, "available_bytes", lambda device: 3 * per_token * width / BUDGET_FRACTION)
        backend.micro_batch_auto = auto  # what "auto" sets on a CUDA device
        adv = torch.linspace(-1, 1, r.n).unsqueeze(1).expand_as(r.mask)  # [N, T]
        results.append(backend.train_step(r, adv))
    whole, sized = results
    assert whole["memory/micro_batch_rows"] == 8 and sized["memory/micro_batch_rows"] == 3
    assert sized["loss/policy"] == pytest.approx(whole["loss/policy"], abs=1e-6)
    assert sized["train/grad_norm"] == pytest.approx(whole["train/grad_norm"], rel=1e-5)


def test_the_meter_uses_its_measurement_with_a_margin():
    from retrain.backends.micro_batch import MEASURED_MARGIN, ActivationMeter

    meter = ActivationMeter()
    assert meter.per_token(2_174_976) == 2_174_976  # nothing measured yet: the estimate
    meter.observe(0, 100)  # nothing held (or no tokens): no measurement
    meter.observe(5e9, 0)
    assert meter.bytes_per_token == 0
    meter.observe(12 * 2**30, 64 * 384)  # 12 GiB held by 64 rows of 384 tokens
    assert meter.per_token(2_174_976) == MEASURED_MARGIN * 12 * 2**30 / (64 * 384) == pytest.approx(576_717, abs=1)
    # the step that measured this split 128 rows in two at the estimate; now they run whole
    assert rows_that_fit(128, 384, 2_174_976, BUDGET_FRACTION * H100_FREE) == 80
    assert rows_that_fit(128, 384, meter.per_token(2_174_976), BUDGET_FRACTION * H100_FREE) == 128


def test_later_steps_size_their_micro_batches_from_what_the_first_one_held(tiny_model, monkeypatch):
    """The GPU branch on the CPU, with the allocator's counter as a stand-in too (it reads CUDA): step 1 has
    room for 3 rows at the estimate; its first micro-batch (2 rows) is seen to hold what puts 4 rows in the
    room, so step 2 runs 8 rows as 2 x 4. The counter is read twice, around that micro-batch's forward."""
    import torch

    from retrain.backends import micro_batch
    from retrain.backends.local import LocalBackend
    from retrain.config import config_from_dict
    from retrain.engines.pytorch import PytorchEngine
    from retrain.types import Rollouts, RunContext, SamplingParams, Task

    cfg = config_from_dict({"model": {"model": str(tiny_model), "lora_rank": 4}, "training": {"lr": 1e-2}})
    ctx = RunContext(config=cfg, registry=None)
    backend = ctx.backend = LocalBackend(ctx=ctx, devices="cpu", micro_batch_size=0)
    engine = PytorchEngine(ctx=ctx)
    prompts = [backend.tokenizer.encode(x) for x in ("1 2 3", "4 5 6 7")]
    gen = engine.generate(prompts, SamplingParams(n=4, max_tokens=6, temperature=0.7, seed=5))
    r = Rollouts.from_generation([Task(prompt=str(i), answer="") for i in range(2)], prompts, gen, 4)  # [8, T]
    width = max(len(p) for p in prompts) + r.mask.shape[1]
    estimate = activation_bytes_per_token(backend.model.config, backend.dtype.itemsize)
    room = 3 * estimate * width  # the budget: 3 rows at the estimate
    monkeypatch.setattr(micro_batch, "available_bytes", lambda device: room / BUDGET_FRACTION)
    held = 2 * width * room / (4 * width) / micro_batch.MEASURED_MARGIN  # 2 rows' worth; 4 rows fill the room
    readings = iter([1e9, 1e9 + held])
    monkeypatch.setattr("retrain.backends.local.allocated_bytes", lambda device: next(readings))
    backend.micro_batch_auto = True  # what "auto" sets on a CUDA device
    adv = torch.linspace(-1, 1, r.n).unsqueeze(1).expand_as(r.mask)  # [N, T]
    first = backend.train_step(r, adv)
    assert first["memory/micro_batch_rows"] == 3  # 2, 3, 3: the estimate
    assert backend.activation_meter.bytes_per_token == pytest.approx(held / (2 * width))
    readings = iter([2e9, 2e9 + held * 2])  # 4 rows hold twice as much
    second = backend.train_step(r, adv)
    assert second["memory/micro_batch_rows"] == 4  # 4, 4: the measurement
    assert backend.activation_meter.bytes_per_token == pytest.approx(held / (2 * width))
    assert next(readings, None) is None  # read twice per step, no more
