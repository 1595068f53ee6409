"""Back pressure: USL fit recovers known parameters; memory cap; warm-up; hysteresis; checkpoints."""

from __future__ import annotations

import math
import random

import pytest

from retrain.backpressure import (
    BackpressureController,
    USLFit,
    fit_usl,
    kv_bytes_per_token,
    kv_bytes_per_token_from_config,
    kv_cache_max_concurrency,
    usl,
)


@pytest.mark.parametrize(
    "lam,sigma,kappa",
    [(100.0, 0.05, 0.001), (2000.0, 0.3, 0.0002), (50.0, 0.0, 0.01), (10.0, 0.8, 0.0)],
)
def test_fit_recovers_exact_curve(lam, sigma, kappa):
    pts = [(p, usl(p, lam, sigma, kappa)) for p in (1, 2, 4, 8, 16, 32, 64, 128)]
    fit = fit_usl(pts)
    assert fit.lam == pytest.approx(lam, rel=1e-6)
    assert fit.sigma == pytest.approx(sigma, abs=1e-6)
    assert fit.kappa == pytest.approx(kappa, abs=1e-8)
    assert fit.rmse_rel < 1e-6


def test_fit_recovers_noisy_curve_and_peak():
    rng = random.Random(0)
    lam, sigma, kappa = 500.0, 0.1, 0.0005
    pts = [(p, usl(p, lam, sigma, kappa) * (1 + rng.gauss(0, 0.02))) for p in (1, 2, 4, 8, 16, 32, 64, 96, 128, 192)]
    fit = fit_usl(pts)
    true_peak = math.sqrt((1 - sigma) / kappa)  # 42.4
    assert fit.sigma == pytest.approx(sigma, abs=0.03)
    assert fit.kappa == pytest.approx(kappa, rel=0.2)
    assert fit.peak == pytest.approx(true_peak, rel=0.1)
    assert 0.005 < fit.rmse_rel < 0.05  # about the 2% noise


def test_fit_without_p1_still_recovers():
    # no measurement at p = 1: lambda is extrapolated
    pts = [(p, usl(p, 300.0, 0.2, 0.002)) for p in (8, 32, 128)]
    fit = fit_usl(pts)
    assert (fit.lam, fit.sigma, fit.kappa) == pytest.approx((300.0, 0.2, 0.002), rel=1e-5)


def test_fit_needs_three_distinct_points():
    with pytest.raises(ValueError, match="needs throughput at >= 3 distinct concurrencies, got \\[1.0, 4.0\\]"):
        fit_usl([(1, 10.0), (4, 30.0), (4, 31.0)])


def test_peak_formula():
    assert USLFit(1.0, 0.19, 0.01, 0.0).peak == pytest.approx(9.0)  # sqrt(0.81 / 0.01)
    assert math.isinf(USLFit(1.0, 0.1, 0.0, 0.0).peak)


def test_kv_memory_bound_units():
    # Qwen2.5-0.5B: 24 layers, 2 KV heads, head_dim 64, bf16 -> 2*24*2*64*2 = 12288 bytes per token
    per_token = kv_bytes_per_token(layers=24, kv_heads=2, head_dim=64, dtype_bytes=2)
    assert per_token == 12288
    # 1 GiB free, 128 prompt + 256 completion tokens = 384 tokens/seq -> 4718592 bytes/seq -> 227 seqs
    assert kv_cache_max_concurrency(2**30, per_token, prompt_len=128, max_tokens=256) == 227
    assert kv_cache_max_concurrency(100, per_token, 1, 1) == 0


def test_kv_bytes_from_transformers_config():
    from transformers import Qwen2Config

    cfg = Qwen2Config(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2)
    assert kv_bytes_per_token_from_config(cfg, dtype_bytes=2) == 12288


def feed(ctl: BackpressureController, curve, steps: int) -> list[int]:
    """Run the loop protocol against a throughput curve; return the batch chosen at each step."""
    chosen = []
    for _ in range(steps):
        p = ctl.next_batch()
        chosen.append(p)
        ctl.observe(p, curve(p))
    return chosen


def test_warmup_probes_distinct_then_moves_to_margin_of_peak():
    lam, sigma, kappa = 100.0, 0.05, 0.0005  # p* = sqrt(0.95 / 0.0005) = 43.6
    ctl = BackpressureController(min_batch=1, max_batch=256, margin=0.9, warmup_probes=4, hysteresis=0.1)
    chosen = feed(ctl, lambda p: usl(p, lam, sigma, kappa), 8)
    assert chosen[:4] == [1, 6, 40, 256]  # geometric, distinct
    assert chosen[4:] == [39] * 4  # floor(0.9 * 43.6)
    assert ctl.fit is not None and ctl.fit.peak == pytest.approx(43.59, abs=0.01)


def test_memory_cap_bounds_probes_and_target():
    # no retrograde (kappa = 0): the target would be max_batch, the KV cache allows only 60
    ctl = BackpressureController(min_batch=1, max_batch=1024, warmup_probes=3, memory_cap=60)
    chosen = feed(ctl, lambda p: usl(p, 100.0, 0.01, 0.0), 6)
    assert chosen == [1, 8, 60, 60, 60, 60]
    ctl.set_memory_cap(20)  # memory got tighter (e.g. longer prompts)
    assert ctl.next_batch() == 20


def test_hysteresis_ignores_small_moves_and_follows_large_ones():
    ctl = BackpressureController(min_batch=1, max_batch=256, margin=1.0, warmup_probes=3, hysteresis=0.2,
                                 per_point=1)
    peak_at = {"p": 50.0}

    def curve(p):  # sigma 0, kappa from the wanted peak: p* = sqrt(1 / kappa)
        return usl(p, 10.0, 0.0, 1.0 / peak_at["p"] ** 2)

    assert feed(ctl, curve, 4) == [1, 16, 256, 50]
    # the workload drifts by 10%: inside the 20% band, the batch stays
    peak_at["p"] = 55.0
    for p in (1, 16, 50, 256):
        ctl.observe(p, curve(p))
    assert ctl.target() == 55 and ctl.next_batch() == 50
    # a 60% drift is followed
    peak_at["p"] = 80.0
    for p in (1, 16, 50, 256):
        ctl.observe(p, curve(p))
    assert ctl.next_batch() == 80


def test_state_dict_roundtrip():
    ctl = BackpressureController(min_batch=2, max_batch=128, warmup_probes=3)
    feed(ctl, lambda p: usl(p, 100.0, 0.1, 0.002), 5)
    other = BackpressureController(min_batch=2, max_batch=128, warmup_probes=3)
    other.load_state_dict(ctl.state_dict())
    assert other.next_batch() == ctl.next_batch() == 19  # floor(0.9 * sqrt(0.9 / 0.002)) = floor(19.09)
    assert other.fit == ctl.fit
    assert other.metrics() == ctl.metrics()


def test_from_config_section_defaults():
    from retrain.config import load_config

    cfg = load_config(None, {"backpressure.max_batch": 512})
    ctl = BackpressureController.from_config(cfg.section("backpressure"), memory_cap=100)
    assert (ctl.min_batch, ctl.max_batch, ctl.margin, ctl.hysteresis, ctl.upper) == (1, 512, 0.9, 0.1, 100)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match=r"\[backpressure\] needs 1 <= min_batch <= max_batch, got 8, 4"):
        BackpressureController(min_batch=8, max_batch=4)
    with pytest.raises(ValueError, match=r"\[backpressure\] margin must be in \(0, 1\], got 1.5"):
        BackpressureController(margin=1.5)


def test_concatenated_chunks_keep_order_and_must_share_a_policy_version():
    from retrain.types import Generation

    def gen(ids, version, entropy=True):
        return Generation(completion_ids=ids, logprobs=[[-1.0] * len(r) for r in ids], finish_reasons=["stop"] * len(ids),
                          texts=[str(r) for r in ids], policy_version=version,
                          entropy=[[0.5] * len(r) for r in ids] if entropy else None)

    merged = Generation.concat([gen([[1], [2, 3]], 4), gen([[5]], 4, entropy=False)])
    assert (merged.completion_ids, merged.texts, merged.policy_version) == ([[1], [2, 3], [5]], ["[1]", "[2, 3]", "[5]"], 4)
    assert merged.entropy is None  # one chunk lacks it: none rather than misaligned rows
    with pytest.raises(RuntimeError, match=r"^back-pressure chunks sampled from different policy versions \[4, 5\]$"):
        Generation.concat([gen([[1]], 4), gen([[2]], 5)], what="back-pressure chunks")
