"""Back pressure driven by the real pytorch engine on a CPU: probes, fit, then a stable batch."""

from __future__ import annotations

import random
import time


def test_controller_adapts_to_measured_engine_throughput(tiny_model, monkeypatch):
    from retrain.backpressure import BackpressureController
    from retrain.config import load_config
    from retrain.plugins import load_plugins
    from retrain.types import RunContext, SamplingParams

    monkeypatch.setenv("RETRAIN_FAST_DECODE", "1")  # forced lengths on CPU
    cfg = load_config(None, {"model.model": str(tiny_model), "model.lora_rank": 4, "backend.devices": "cpu"})
    reg = load_plugins()
    ctx = RunContext(config=cfg, registry=reg)
    backend = reg.build("backend", "local", ctx=ctx)
    ctx.backend, ctx.tokenizer = backend, backend.tokenizer
    engine = reg.build("engine", "pytorch", ctx=ctx)
    ctl = BackpressureController(min_batch=1, max_batch=32, warmup_probes=3, memory_cap=24)
    rng = random.Random(0)
    chosen = []
    for r in range(5):
        p = ctl.next_batch()
        chosen.append(p)
        prompts = [[rng.randrange(4, 90) for _ in range(6)] for _ in range(p)]
        t = time.perf_counter()
        gen = engine.generate(prompts, SamplingParams(n=1, max_tokens=4, temperature=1.0, seed=r, min_tokens=4))
        assert [len(x) for x in gen.completion_ids] == [4] * p
        ctl.observe(p, 4 * p / (time.perf_counter() - t))
    assert chosen[:3] == [1, 5, 24]  # geometric probes up to the memory cap
    assert ctl.fit is not None and 0.0 <= ctl.fit.sigma < 1.0 and ctl.fit.kappa >= 0.0
    # adapted: the fitted target (never above the cap), held within the 10% hysteresis band
    assert all(1 <= c <= 24 for c in chosen[3:])
    assert ctl.next_batch() == ctl.current and abs(ctl.target() - ctl.current) <= 0.1 * ctl.current


def test_generate_with_backpressure_chunks_whole_groups(tiny_model, monkeypatch):
    from retrain.backpressure import BackpressureController, generate_with_backpressure
    from retrain.config import load_config
    from retrain.plugins import load_plugins
    from retrain.types import RunContext, SamplingParams

    monkeypatch.setenv("RETRAIN_FAST_DECODE", "1")
    cfg = load_config(None, {"model.model": str(tiny_model), "model.lora_rank": 4, "backend.devices": "cpu"})
    reg = load_plugins()
    ctx = RunContext(config=cfg, registry=reg)
    backend = reg.build("backend", "local", ctx=ctx)
    ctx.backend, ctx.tokenizer = backend, backend.tokenizer
    engine = reg.build("engine", "pytorch", ctx=ctx)
    ctl = BackpressureController(min_batch=2, max_batch=12, warmup_probes=3)  # probes 2, 5, 12 rows
    prompts = [[5 + i, 6, 7] for i in range(6)]  # B = 6 prompts, G = 2 -> 12 rows
    params = SamplingParams(n=2, max_tokens=3, temperature=1.0, seed=0, min_tokens=3)
    gen = generate_with_backpressure(engine, prompts, params, ctl)
    # chunks of 1, 2 and 3 prompts (2, 4, 6 rows: whole groups of G = 2 at or below each probe)
    assert [p for p, _ in ctl.observations] == [2, 4, 6]
    assert len(gen.completion_ids) == len(gen.logprobs) == len(gen.texts) == 12
    assert all(len(c) == 3 for c in gen.completion_ids) and gen.entropy is not None
