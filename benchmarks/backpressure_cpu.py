"""Back pressure, live on a CPU: the pytorch engine generates at the concurrency the controller picks.

    python benchmarks/backpressure_cpu.py [--rounds 10] [--free-mib 64]

A tiny random-init Llama (retrain.testing) is loaded by the ``local`` backend; each round the
``pytorch`` engine samples ``controller.next_batch()`` rows of ``--tokens`` forced tokens, the
measured tokens/s goes to ``controller.observe``, and the table shows the warm-up probes, the USL
fit and the batch it settles on. ``--free-mib`` pretends that much memory is free for the KV cache
(CPUs have no fixed pool), which caps the batch in sequences:
free / (kv bytes per token * (prompt + completion tokens)).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--max-batch", type=int, default=512)
    ap.add_argument("--free-mib", type=float, default=0.0, help="pretend free KV-cache memory (0 = no cap)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("RETRAIN_FAST_DECODE", "1")  # forced lengths (min_tokens) on CPU too

    from retrain.backpressure import (
        BackpressureController,
        kv_bytes_per_token_from_config,
        kv_cache_max_concurrency,
    )
    from retrain.config import load_config
    from retrain.plugins import load_plugins
    from retrain.testing import tiny_model_dir
    from retrain.types import RunContext, SamplingParams

    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_model_dir(tmp, hidden=128, layers=4, heads=4, intermediate=256)
        cfg = load_config(None, {"model.model": str(path), "model.lora_rank": 8, "backend.devices": "cpu"})
        reg = load_plugins()
        ctx = RunContext(config=cfg, registry=reg)
        backend = reg.build("backend", "local", ctx=ctx)
        ctx.backend, ctx.tokenizer = backend, backend.tokenizer
        engine = reg.build("engine", "pytorch", ctx=ctx)

        cap = None
        if args.free_mib > 0:
            per_token = kv_bytes_per_token_from_config(backend.model.config, 4)  # fp32 on CPU
            cap = kv_cache_max_concurrency(int(args.free_mib * 2**20), per_token, args.prompt_len, args.tokens)
            print(f"KV cache: {per_token} bytes/token x {args.prompt_len + args.tokens} tokens/seq -> "
                  f"{args.free_mib} MiB holds {cap} sequences")
        section = cfg.section("backpressure")
        section.update(max_batch=args.max_batch, warmup_probes=4)
        ctl = BackpressureController.from_config(section, memory_cap=cap)
        rng = random.Random(0)
        vocab = len(backend.tokenizer)
        print(f"{'round':>5} {'batch':>6} {'tok/s':>9}  phase      fit")
        for r in range(args.rounds):
            p = ctl.next_batch()
            phase = "warm-up" if ctl.warming_up else "adapted"
            prompts = [[rng.randrange(4, vocab) for _ in range(args.prompt_len)] for _ in range(p)]
            t = time.perf_counter()
            gen = engine.generate(prompts, SamplingParams(n=1, max_tokens=args.tokens, temperature=1.0, seed=r,
                                                          min_tokens=args.tokens))
            tps = sum(len(x) for x in gen.completion_ids) / (time.perf_counter() - t)
            ctl.observe(p, tps)
            fit = ctl.fit
            desc = (f"sigma={fit.sigma:.3f} kappa={fit.kappa:.2e} p*={fit.peak:.0f} -> next {ctl.next_batch()}"
                    if fit else "")
            print(f"{r:>5} {p:>6} {tps:>9.0f}  {phase:<9}  {desc}", flush=True)


if __name__ == "__main__":
    main()
