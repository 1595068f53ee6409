"""The GRPO benchmark of ``retrain bench`` (``retrain.bench.grpo``) on W GPUs with FSDP2.

    torchrun --standalone --nproc-per-node 2 -m retrain.distributed.bench --model-dir /tmp/m --prompts 8

Same workload and components as the one-GPU benchmark (random-init Qwen2.5-0.5B shape, B prompts
of 128 random tokens x G = 16 samples x 256 forced tokens, LoRA r32, one optimizer step per
batch), through the same code a torchrun training run uses: each rank samples its B/W prompts
from its replica (CUDA fast path), rollouts are all-gathered, GRPO credit runs on the global
batch, each rank trains its rows (LoRA: its replicated adapter, one gradient all-reduce per step;
``RETRAIN_LORA_FSDP=1``: the FSDP2-sharded adapter, as before; global token mean, gradients
summed), the sampling replica is refreshed where there is one. The first step (graph capture, compile, allocator) is not counted.
Rank 0 prints one JSON line: seconds per step, phases, generation and end-to-end tokens/s.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any


def _sync(world: Any) -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    world.barrier()


def run(args: Any) -> dict[str, Any] | None:
    import torch

    from retrain.advantages.credit import build_credit
    from retrain.bench.grpo import VOCAB
    from retrain.config import load_config
    from retrain.distributed.fsdp import shard_backend
    from retrain.distributed.step import StepShards
    from retrain.distributed.world import init_world
    from retrain.plugins import load_plugins
    from retrain.types import Rollouts, RunContext, SamplingParams, Task

    world = init_world("gpu" if torch.cuda.is_available() else "cpu")
    if world is None:
        raise SystemExit("run me under torchrun (see the module doc)")
    b, g, length, plen = args.prompts, args.group, args.tokens, args.prompt_len
    cfg = load_config(None, {
        "model.model": args.model_dir, "model.lora_rank": args.lora, "model.lora_alpha": 2.0 * args.lora,
        "training.batch_size": b, "training.group_size": g, "training.max_tokens": length,
        "training.temperature": 1.0, "training.lr": 1e-5, "algorithm.advantage_mode": "grpo",
        "backend.micro_batch_size": args.micro_batch, "backend.logprob_chunk": args.logprob_chunk,
        "backend.dtype": args.dtype})
    reg = load_plugins()
    ctx = RunContext(config=cfg, registry=reg)
    backend = reg.build("backend", "local", ctx=ctx)
    ctx.backend, ctx.tokenizer = backend, backend.tokenizer
    shard_backend(backend, world)
    shards = StepShards(world)
    engine = reg.build("engine", "pytorch", ctx=ctx)
    credit = build_credit(ctx)
    rng = random.Random(0)
    steps = []
    for step in range(args.steps + 1):
        prompt_ids = [[rng.randrange(10, VOCAB) for _ in range(plen)] for _ in range(b)]  # B prompts, same on all ranks
        tasks = [Task(prompt="", answer="") for _ in range(b)]
        _sync(world)
        t0 = time.perf_counter()
        mine = shards.share(prompt_ids)  # B/W prompts
        gen = engine.generate(mine, SamplingParams(n=g, max_tokens=length, temperature=1.0, seed=step,
                                                   min_tokens=length, row_offset=shards.row_offset(b)))
        _sync(world)
        t1 = time.perf_counter()
        all_ids, gen = shards.gather_generation(mine, gen)
        rollouts = Rollouts.from_generation(tasks, all_ids, gen, g)  # [N, T]
        rewards = torch.tensor([float(len(x) % 3 == 0) for x in gen.texts])  # [N], as the peer
        token_adv, _ = credit.compute(rewards, rollouts, step)  # [N, T]
        _sync(world)
        t2 = time.perf_counter()
        backend.train_step(*shards.rows(rollouts, token_adv), importance_correction=False)  # incl. replica refresh
        _sync(world)
        t3 = time.perf_counter()
        engine.sync(backend, backend.version)
        _sync(world)
        t4 = time.perf_counter()
        row = {"step": step, "s": t4 - t0, "generate": t1 - t0, "gather_reward_credit": t2 - t1,
               "train": t3 - t2, "sync": t4 - t3}
        steps.append(row)
        if world.is_main:
            print("step", json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    steady = steps[1:]
    mean = {k: sum(r[k] for r in steady) / len(steady) for k in steady[0] if k != "step"}
    n = b * g
    out = {"world_size": world.size, "mode": backend.dist.mode, "prompts": b, "G": g, "L": length, "lora": args.lora,
           "fast_path": getattr(engine, "_fast_decoder", None) is not None,
           "s_per_step": round(mean["s"], 3), "phases_s": {k: round(v, 3) for k, v in mean.items() if k != "s"},
           "gen_tok_per_s": round(n * length / mean["generate"], 1),
           "tok_per_s_end_to_end": round(n * length / mean["s"], 1),
           "train_tok_per_s": round(n * (plen + length) / mean["train"], 1),
           "peak_GiB_rank0": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None}
    world.close(synchronize=True)
    return out if world.is_main else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, help="built by retrain.bench.grpo.build_model_dir when missing")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=8, help="global B (divisible by the number of ranks)")
    ap.add_argument("--group", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--lora", type=int, default=32)
    ap.add_argument("--micro-batch", type=int, default=32)
    ap.add_argument("--logprob-chunk", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    import os

    if not (Path(args.model_dir) / "config.json").is_file() and os.environ.get("RANK", "0") == "0":
        from retrain.bench.grpo import build_model_dir

        build_model_dir(Path(args.model_dir), layers=args.layers)
    while not (Path(args.model_dir) / "config.json").is_file():  # other ranks wait for rank 0's model
        time.sleep(1)
    time.sleep(1)
    out = run(args)
    if out is not None:
        print("RESULT", json.dumps(out), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
