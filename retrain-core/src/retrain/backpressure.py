"""Back pressure: size the generation batch from a Universal-Scalability-Law fit (docs/performance.md, "Back pressure").

Throughput X (tokens/s) at concurrency p (sequences decoded together) follows Gunther's USL

    X(p) = lam * p / (1 + sigma * (p - 1) + kappa * p * (p - 1))

sigma is contention (serial fraction), kappa coherency (cross-talk that makes throughput fall
past the peak), lam the throughput of one sequence. The peak is at p* = sqrt((1 - sigma) / kappa).

The controller probes a few distinct concurrencies (warm-up), fits (lam, sigma, kappa) by least
squares, and moves the batch to ``margin * p*``, never above what the KV cache fits in memory
(:func:`kv_cache_max_concurrency`) nor ``max_batch``; changes smaller than ``hysteresis``
(relative) are ignored so the batch does not flap with measurement noise.

Fitting (numpy): p / X = a + b (p - 1) + c p (p - 1) is linear in a = 1/lam, b = sigma/lam,
c = kappa/lam, so ``numpy.linalg.lstsq`` gives a start; a few damped Gauss-Newton
(Levenberg-Marquardt) steps then minimise the *relative* residuals (X_model - X) / X of the
original curve, with sigma kept in [0, 1) and kappa >= 0.

How the loop uses it: :class:`BackpressureEngine` wraps the run's engine; its ``generate`` makes
the N = B*G rows of a step in chunks of ``controller.next_batch()`` rows (its generation
micro-batch), times each chunk, and calls ``controller.observe(rows_in_chunk, generated_tokens /
seconds)``. Its state goes into checkpoints (``state_dict`` / ``load_state_dict``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class USLFit:
    """Fitted USL parameters and the quality of the fit."""

    lam: float  # tokens/s of one sequence
    sigma: float  # contention, in [0, 1)
    kappa: float  # coherency, >= 0
    rmse_rel: float  # root-mean-square relative residual of the fit

    def throughput(self, p: float) -> float:
        return usl(p, self.lam, self.sigma, self.kappa)

    @property
    def peak(self) -> float:
        """p* = sqrt((1 - sigma) / kappa); infinite when kappa == 0 (no retrograde region)."""
        if self.kappa <= 0.0:
            return math.inf
        return math.sqrt(max(1.0 - self.sigma, 0.0) / self.kappa)


def usl(p: float, lam: float, sigma: float, kappa: float) -> float:
    """Universal Scalability Law throughput at concurrency ``p``."""
    return lam * p / (1.0 + sigma * (p - 1.0) + kappa * p * (p - 1.0))


def _clamp_params(lam: float, sigma: float, kappa: float) -> tuple[float, float, float]:
    return max(float(lam), 1e-12), min(max(float(sigma), 0.0), 1.0 - 1e-9), max(float(kappa), 0.0)


def fit_usl(points: list[tuple[float, float]], iterations: int = 50) -> USLFit:
    """Least-squares USL fit to ``(concurrency, throughput)`` points (at least 3 distinct p, X > 0).

    >>> pts = [(p, usl(p, 100.0, 0.05, 0.001)) for p in (1, 4, 16, 64)]
    >>> f = fit_usl(pts); round(f.sigma, 4), round(f.kappa, 5)
    (0.05, 0.001)
    """
    import numpy as np

    pts = [(float(p), float(x)) for p, x in points if p > 0 and x > 0]
    if len({p for p, _ in pts}) < 3:
        raise ValueError(f"fit_usl needs throughput at >= 3 distinct concurrencies, got {sorted({p for p, _ in pts})}")
    ps, xs = np.array([p for p, _ in pts]), np.array([x for _, x in pts])  # [n], [n]

    # 1) Linearised start: p/X = a + b (p-1) + c p (p-1), each row weighted by X/p so that the
    #    residual is relative to X (the weighted target is 1 at an exact fit).
    w = xs / ps  # [n]
    design = np.stack([w, w * (ps - 1.0), w * ps * (ps - 1.0)], axis=1)  # [n, 3]
    (a, b, c), *_ = np.linalg.lstsq(design, np.ones_like(ps), rcond=None)
    if np.isfinite([a, b, c]).all() and a > 0:
        lam, sigma, kappa = _clamp_params(1.0 / a, b / a, c / a)
    else:  # degenerate: start from "linear scaling at the best per-sequence rate"
        lam, sigma, kappa = float(w.max()), 0.0, 0.0

    # 2) Projected Levenberg-Marquardt on relative residuals of the original curve.
    def residuals(params: tuple[float, float, float]) -> np.ndarray:
        lam, sigma, kappa = params
        return (lam * ps / (1.0 + sigma * (ps - 1.0) + kappa * ps * (ps - 1.0)) - xs) / xs  # [n]

    params = (lam, sigma, kappa)
    best = float(residuals(params) @ residuals(params))
    damping = 1e-3
    for _ in range(iterations):
        lam, sigma, kappa = params
        d = 1.0 + sigma * (ps - 1.0) + kappa * ps * (ps - 1.0)  # [n]
        model = lam * ps / d  # [n]
        r = (model - xs) / xs  # [n]
        # d(model)/d(lam, sigma, kappa), divided by X (relative residual)
        jac = np.stack([ps / d, -model * (ps - 1.0) / d, -model * ps * (ps - 1.0) / d], axis=1) / xs[:, None]  # [n, 3]
        jtj, jtr = jac.T @ jac, jac.T @ r  # [3, 3], [3]
        improved = False
        for _ in range(10):
            try:
                step = np.linalg.solve(jtj + damping * np.diag(np.diag(jtj)), -jtr)  # [3]
            except np.linalg.LinAlgError:
                break
            trial = _clamp_params(lam + float(step[0]), sigma + float(step[1]), kappa + float(step[2]))
            cost = float(residuals(trial) @ residuals(trial))
            if cost < best:
                params, best, improved = trial, cost, True
                damping = max(damping / 3.0, 1e-12)
                break
            damping *= 10.0
        if not improved or best < 1e-24:
            break
    lam, sigma, kappa = params
    rmse = math.sqrt(best / len(ps))
    return USLFit(lam=lam, sigma=sigma, kappa=kappa, rmse_rel=rmse)


def kv_bytes_per_token(layers: int, kv_heads: int, head_dim: int, dtype_bytes: int) -> int:
    """Bytes of KV cache one token occupies: K and V, every layer: 2 * layers * kv_heads * head_dim * dtype_bytes."""
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def kv_bytes_per_token_from_config(model_config: Any, dtype_bytes: int) -> int:
    """:func:`kv_bytes_per_token` read off a transformers model config (GQA-aware)."""
    heads = model_config.num_attention_heads
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // heads
    return kv_bytes_per_token(model_config.num_hidden_layers, kv_heads, head_dim, dtype_bytes)


def kv_cache_max_concurrency(free_bytes: int, bytes_per_token: int, prompt_len: int, max_tokens: int) -> int:
    """Sequences whose full KV cache (prompt + completion tokens) fits in ``free_bytes``.

    Units: bytes / (bytes per token * tokens per sequence) = sequences.
    """
    per_sequence = bytes_per_token * (prompt_len + max_tokens)
    if per_sequence <= 0:
        raise ValueError("bytes_per_token * (prompt_len + max_tokens) must be positive")
    return max(0, int(free_bytes // per_sequence))


def _probe_points(low: int, high: int, count: int) -> list[int]:
    """``count`` distinct integers from ``low`` to ``high``, geometrically spaced (fewer if the range is small)."""
    if high <= low or count <= 1:
        return [low]
    count = min(count, high - low + 1)
    out: list[int] = []
    for i in range(count):
        v = round(low * (high / low) ** (i / (count - 1)))
        v = max(low, min(high, v))
        while v in out and v < high:
            v += 1
        if v not in out:
            out.append(v)
    return sorted(out)


class BackpressureController:
    """Adaptive generation batch: warm-up probes, USL fit, ``margin * p*`` under a memory cap, hysteresis."""

    def __init__(
        self,
        min_batch: int = 1,
        max_batch: int = 1024,
        margin: float = 0.9,
        warmup_probes: int = 3,
        hysteresis: float = 0.1,
        memory_cap: int | None = None,
        per_point: int = 4,
    ) -> None:
        if min_batch < 1 or max_batch < min_batch:
            raise ValueError(f"[backpressure] needs 1 <= min_batch <= max_batch, got {min_batch}, {max_batch}")
        if not 0.0 < margin <= 1.0:
            raise ValueError(f"[backpressure] margin must be in (0, 1], got {margin}")
        self.min_batch = min_batch
        self.max_batch = max_batch
        self.margin = margin
        self.warmup_probes = max(3, warmup_probes)  # three parameters need three distinct points
        self.hysteresis = hysteresis
        self.memory_cap = memory_cap
        self.per_point = per_point  # recent measurements kept per concurrency (older ones age out)
        self.observations: list[tuple[int, float]] = []
        self.current: int | None = None
        self.fit: USLFit | None = None
        self._probes = self._make_probes()
        self._probed: set[int] = set()  # warm-up probes already answered by an observation
        self._issued: int | None = None  # the probe handed out by next_batch, awaiting its observation

    @classmethod
    def from_config(cls, section: dict[str, Any], memory_cap: int | None = None) -> BackpressureController:
        """Build from the ``[backpressure]`` section (``config.section("backpressure")``)."""
        keys = ("min_batch", "max_batch", "margin", "warmup_probes", "hysteresis")
        return cls(**{k: section[k] for k in keys if k in section}, memory_cap=memory_cap)

    # -- limits ---------------------------------------------------------------------------------
    @property
    def upper(self) -> int:
        """The largest batch allowed: ``max_batch``, lowered to the KV-cache memory cap when known."""
        cap = self.max_batch if self.memory_cap is None else min(self.max_batch, self.memory_cap)
        return max(self.min_batch, cap)

    def set_memory_cap(self, sequences: int | None) -> None:
        """Cap the batch at ``sequences`` (e.g. from :func:`kv_cache_max_concurrency`)."""
        self.memory_cap = sequences
        self._probes = [p for p in self._probes if p <= self.upper] or [self.upper]
        if self.current is not None:
            self.current = min(self.current, self.upper)

    def _make_probes(self) -> list[int]:
        return _probe_points(self.min_batch, self.upper, self.warmup_probes)

    @property
    def warming_up(self) -> bool:
        return any(p not in self._probed for p in self._probes)

    # -- the API the loop calls ---------------------------------------------------------------
    def observe(self, concurrency: int, tokens_per_s: float) -> None:
        """Record that ``concurrency`` sequences decoded together gave ``tokens_per_s``."""
        if concurrency < 1 or not tokens_per_s > 0 or not math.isfinite(tokens_per_s):
            return
        p = int(concurrency)
        # the caller may round a probe down (e.g. to whole groups): the observation answers it
        self._probed.update({p, self._issued} - {None})  # type: ignore[arg-type]
        self._issued = None
        self.observations.append((p, float(tokens_per_s)))
        same = [i for i, (q, _) in enumerate(self.observations) if q == p]
        if len(same) > self.per_point:  # forget the oldest at this p: the fit follows drift
            del self.observations[same[0]]
        if not self.warming_up:
            self._refit()

    def next_batch(self) -> int:
        """The concurrency to use next: the next unprobed warm-up point, then the fitted target."""
        if self.warming_up:
            self._issued = next(p for p in self._probes if p not in self._probed)
            return self._issued
        if self.current is None:
            self._refit()
        return self.current if self.current is not None else self.upper

    def target(self) -> int | None:
        """``margin * p*`` clamped to [min_batch, upper]; None before the first fit."""
        if self.fit is None:
            return None
        peak = self.fit.peak
        # floor with a hair of tolerance: a fit landing at 54.9999999 for an exact peak of 55 keeps 55
        raw = self.upper if math.isinf(peak) else int(math.floor(self.margin * peak + 1e-6))
        return max(self.min_batch, min(self.upper, raw))

    def _refit(self) -> None:
        # average the recent measurements at each concurrency
        by_p: dict[int, list[float]] = {}
        for p, x in self.observations:
            by_p.setdefault(p, []).append(x)
        if len(by_p) < 3:
            return
        self.fit = fit_usl([(p, sum(v) / len(v)) for p, v in by_p.items()])
        want = self.target()
        assert want is not None
        if self.current is None or abs(want - self.current) > self.hysteresis * self.current:
            self.current = want

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        fit = None if self.fit is None else [self.fit.lam, self.fit.sigma, self.fit.kappa, self.fit.rmse_rel]
        return {"observations": [list(o) for o in self.observations], "current": self.current,
                "fit": fit, "memory_cap": self.memory_cap, "probes": list(self._probes),
                "probed": sorted(self._probed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.observations = [(int(p), float(x)) for p, x in state["observations"]]
        self.current = state["current"]
        self.memory_cap = state["memory_cap"]
        self.fit = None if state["fit"] is None else USLFit(*state["fit"])
        self._probes = [int(p) for p in state["probes"]]
        self._probed = {int(p) for p in state.get("probed", [])}

    def metrics(self) -> dict[str, float]:
        """``backpressure/*`` metrics for the step logger."""
        out: dict[str, float] = {"backpressure/batch": float(self.next_batch())}
        if self.fit is not None:
            out.update({"backpressure/sigma": self.fit.sigma, "backpressure/kappa": self.fit.kappa,
                        "backpressure/lambda": self.fit.lam, "backpressure/fit_rmse": self.fit.rmse_rel})
            if math.isfinite(self.fit.peak):
                out["backpressure/peak"] = self.fit.peak
        if self.memory_cap is not None:
            out["backpressure/memory_cap"] = float(self.memory_cap)
        return out


def memory_cap_for_model(model: Any, prompt_len: int, max_tokens: int, fraction: float = 0.9) -> int | None:
    """KV-cache concurrency cap for a transformers ``model`` on its device; None on CPU (no fixed pool).

    Uses the accelerator's currently free bytes times ``fraction`` ([backpressure] memory_fraction).
    """
    import torch

    param = next(model.parameters())
    if param.device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(param.device)
    per_token = kv_bytes_per_token_from_config(model.config, param.element_size())
    return kv_cache_max_concurrency(int(free * fraction), per_token, prompt_len, max_tokens)


def generate_with_backpressure(engine: Any, prompt_ids: list[list[int]], params: Any,
                               controller: BackpressureController) -> Any:
    """``engine.generate`` in chunks of whole groups sized by ``controller.next_batch()`` rows.

    Each chunk is timed and reported with ``controller.observe(rows, tokens / seconds)``; the chunks'
    ``Generation``s are concatenated in prompt order (groups stay contiguous).
    :class:`BackpressureEngine` calls this for the loop when ``[backpressure] enabled``.
    """
    import time
    from dataclasses import replace

    from retrain.types import Generation

    parts: list[Generation] = []
    start = 0
    while start < len(prompt_ids):
        prompts_per_chunk = max(1, controller.next_batch() // max(1, params.n))
        chunk = prompt_ids[start:start + prompts_per_chunk]
        t0 = time.perf_counter()
        gen = engine.generate(chunk, replace(params, seed=params.seed + start))
        seconds = max(time.perf_counter() - t0, 1e-9)
        controller.observe(len(gen.completion_ids), sum(len(c) for c in gen.completion_ids) / seconds)
        parts.append(gen)
        start += len(chunk)
    return Generation.concat(parts, what="back-pressure chunks")


class BackpressureEngine:
    """The run's engine with generation in controller-sized chunks of whole groups ([backpressure] enabled).

    ``generate`` goes through :func:`generate_with_backpressure`; ``sync`` and ``close`` reach the
    wrapped engine unchanged; ``step_metrics()`` reports the controller (``backpressure/*``).
    """

    def __init__(self, engine: Any, controller: BackpressureController) -> None:
        self.engine, self.controller = engine, controller

    @property
    def shares_weights(self) -> bool:
        from retrain.protocols import Engine, optional

        return bool(optional(self.engine, Engine, "shares_weights"))

    @property
    def samples_from_copy(self) -> bool:
        from retrain.protocols import Engine, optional

        return bool(optional(self.engine, Engine, "samples_from_copy"))

    @property
    def sample_from_snapshot(self) -> Any:
        from retrain.protocols import Engine, optional

        return optional(self.engine, Engine, "sample_from_snapshot")

    def generate(self, prompt_ids: list[list[int]], params: Any) -> Any:
        return generate_with_backpressure(self.engine, prompt_ids, params, self.controller)  # N rows

    def sync(self, backend: Any, version: int) -> None:
        self.engine.sync(backend, version)

    def close(self) -> None:
        self.engine.close()

    def step_metrics(self) -> dict[str, float]:
        return self.controller.metrics()
