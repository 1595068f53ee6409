"""Peak resident memory of one training step of the default run, on rollouts of its exact shapes.

    python benchmarks/memory/train_step_peak.py                               # retrain.toml as it is
    python benchmarks/memory/train_step_peak.py backend.micro_batch_size=0    # any section.key=value
    python benchmarks/memory/train_step_peak.py --ops backend.micro_batch_size=16   # count the step's ops

Builds the default run's backend (SmolLM2-135M-Instruct, LoRA, bf16 autocast) and one step's
rollouts (16 real prompts x 8 samples x 24 random completion tokens: memory does not depend on
which tokens), resets the kernel's high-water mark (/proc/self/clear_refs) and runs one
``train_step``. Prints the peak resident memory of the step, the wall and CPU seconds (CPU seconds
are the fairer speed comparison on a shared machine), and loss and gradient norm (two settings
that must train the same, e.g. micro-batch sizes, print the same numbers). Linux only.

``--ops``: instead, one warm-up step, then a step under ``torch.profiler`` that counts the PyTorch
operators it dispatches (top-level ones: each a trip from Python through the dispatcher, and on a GPU
at least one kernel launch). A small model's eager GPU step is bound by these, not by arithmetic:
the count per micro-batch is what a micro-batch costs there (docs/default-run.md).
"""

from __future__ import annotations

import sys
import time
import tomllib


def _status(key: str) -> float:
    """A /proc/self/status memory line in GB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1e6 for line in f if line.startswith(key))


def count_ops(backend, rollouts, adv) -> None:
    """Top-level and all aten operator calls of one (warm) train step, and the most frequent ones."""
    import collections

    from torch.profiler import ProfilerActivity, profile

    backend.train_step(rollouts, adv)  # warm-up: lazy initialisation is not a per-step cost
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        backend.train_step(rollouts, adv)
    aten = [e for e in prof.events() if e.name.startswith("aten::")]
    top = [e for e in aten if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    common = ", ".join(f"{name[6:]} {n}" for name, n in collections.Counter(e.name for e in top).most_common(6))
    print(f"train step ops: {len(top)} top-level aten calls ({len(aten)} with nested ones); most: {common}", flush=True)


def main(argv: list[str]) -> None:
    import torch
    from retrain.config import load_config
    from retrain.plugins import load_plugins
    from retrain.prompts import render_prompts
    from retrain.train.runner import seed_everything
    from retrain.types import Generation, Rollouts, RunContext

    ops = "--ops" in argv
    overrides = {k: tomllib.loads(f"x = {v}")["x"] for k, v in (a.split("=", 1) for a in argv if a != "--ops")}
    cfg = load_config("retrain.toml", overrides=overrides)
    seed_everything(cfg.training.seed)
    ctx = RunContext(config=cfg, registry=load_plugins())
    backend = ctx.backend = ctx.registry.build("backend", cfg.backend.backend, where="benchmark", ctx=ctx)
    ctx.tokenizer = backend.tokenizer
    env = ctx.registry.build("environment", cfg.data.source, where="benchmark", ctx=ctx)
    print(f"after load: {_status('VmRSS'):.2f} GB resident", flush=True)
    b, g, t = cfg.training.batch_size, cfg.training.group_size, cfg.training.max_tokens
    tasks = env.sample(b)
    prompts = render_prompts(cfg, ctx.tokenizer, tasks)
    rows = [p for p in prompts for _ in range(g)]
    rng = torch.Generator().manual_seed(0)
    completions = [torch.randint(100, 20000, (t,), generator=rng).tolist() for _ in rows]
    gen = Generation(completion_ids=completions, logprobs=[[-1.0] * t for _ in rows],
                     finish_reasons=["length"] * len(rows), texts=[""] * len(rows), policy_version=0,
                     entropy=[[1.0] * t for _ in rows])
    rollouts = Rollouts.from_generation(tasks, prompts, gen, g)
    adv = torch.randn(len(rows), 1, generator=rng).expand(-1, t).contiguous()  # [N, T]
    if ops:
        return count_ops(backend, rollouts, adv)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    wall, cpu = time.perf_counter(), time.process_time()
    m = backend.train_step(rollouts, adv)
    print(f"train step: peak {_status('VmHWM'):.2f} GB, after {_status('VmRSS'):.2f} GB; "
          f"{time.perf_counter() - wall:.0f} s wall, {time.process_time() - cpu:.0f} s CPU; "
          f"loss {m['loss/policy']:.6f}, grad norm {m['train/grad_norm']:.6f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
