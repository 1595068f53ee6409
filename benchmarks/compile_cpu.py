"""Does ``[backend] compile`` pay on this machine? The trainer step eager vs compiled, same rollouts.

Builds the local backend from a config (default: the default run's ``retrain.toml``), makes
rollouts of the config's shape (B prompts that share a ``--prefix``-token prefix plus their own
``--suffix`` tokens, G random completions of ``max_tokens`` each), then times ``--steps``
optimizer steps with ``compile = false`` and again, from the same initial weights, with
``compile = true``. Prints one JSON line: compile time, seconds per step after it, the steps the
compilation needs to pay back, and the largest loss / grad-norm difference. docs/performance.md
has the numbers of the project's 2-core CPU.

    python benchmarks/compile_cpu.py --steps 3                        # the default run's model
    python benchmarks/compile_cpu.py --tiny --steps 5                 # a random 2-layer model
    python benchmarks/compile_cpu.py --set training.batch_size=4      # fewer rows, same compilation
    RETRAIN_COMPILE_BACKEND=aot_eager python benchmarks/compile_cpu.py --tiny
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any


def rollouts_like(cfg: Any, vocab: int, prefix: int, suffix: int, seed: int) -> tuple[Any, Any]:
    """(Rollouts [N, T], token advantages [N, T]) of the config's B, G and max_tokens."""
    import torch

    from retrain.types import Generation, Rollouts, Task

    t = cfg.training
    rng = random.Random(seed)
    shared = [rng.randrange(10, vocab) for _ in range(prefix)]
    prompts = [shared + [rng.randrange(10, vocab) for _ in range(suffix)] for _ in range(t.batch_size)]  # B
    n = t.batch_size * t.group_size
    comp = [[rng.randrange(10, vocab) for _ in range(t.max_tokens)] for _ in range(n)]  # N x T
    gen = Generation(completion_ids=comp, logprobs=[[-2.0] * t.max_tokens for _ in range(n)],
                     texts=[""] * n, finish_reasons=["length"] * n, policy_version=0)
    r = Rollouts.from_generation([Task(prompt=str(i), answer="") for i in range(t.batch_size)], prompts, gen,
                                 t.group_size)
    adv = torch.randn(t.batch_size, t.group_size, generator=torch.Generator().manual_seed(seed))  # [B, G]
    return r, adv.reshape(n, 1) * r.mask  # [N, T]


def time_steps(cfg: Any, compile: bool, batches: list[tuple[Any, Any]]) -> list[tuple[float, dict[str, float]]]:
    import torch

    from retrain.plugins import load_plugins
    from retrain.types import RunContext

    cfg = cfg.replace({"backend.compile": compile})
    ctx = RunContext(config=cfg, registry=load_plugins())
    torch.manual_seed(cfg.training.seed)  # the same LoRA initialisation in both backends
    backend = ctx.registry.build("backend", "local", ctx=ctx)
    out = []
    for r, adv in batches:
        t0 = time.perf_counter()
        metrics = backend.train_step(r, adv)
        out.append((time.perf_counter() - t0, metrics))
        print(f"compile={compile}: step {len(out)} {out[-1][0]:.2f} s loss {metrics['loss/objective']:+.6f} "
              f"grad norm {metrics['train/grad_norm']:.6f}", flush=True)
    del backend
    gc.collect()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="retrain.toml")
    ap.add_argument("--tiny", action="store_true", help="a random 2-layer Llama instead of the config's model")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the first (which compiles)")
    ap.add_argument("--prefix", type=int, default=120, help="prompt tokens every prompt shares (few-shot turns)")
    ap.add_argument("--suffix", type=int, default=25, help="prompt tokens of each prompt's own")
    ap.add_argument("--threads", type=int, default=0, help="[backend] threads (0: torch's default)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. training.batch_size=4 (TOML value)")
    ap.add_argument("--json", default="", help="also write the result here")
    args = ap.parse_args(argv)

    import torch

    from retrain.config import load_config

    import tomllib

    overrides: dict[str, Any] = {"backend.devices": "cpu", "backend.threads": args.threads}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = tomllib.loads(f"v = {value}")["v"]
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            from retrain.testing import tiny_model_dir

            overrides["model.model"] = str(tiny_model_dir(Path(tmp) / "tiny"))
        cfg = load_config(args.config, overrides)
        from retrain.backends.local import model_source

        vocab = 50 if args.tiny else 49152
        if not args.tiny:
            from transformers import AutoConfig

            path, gguf = model_source(cfg.model.model)
            vocab = AutoConfig.from_pretrained(path, **({"gguf_file": gguf} if gguf else {})).vocab_size
        batches = [rollouts_like(cfg, vocab, args.prefix, args.suffix, seed) for seed in range(args.steps + 1)]
        eager = time_steps(cfg, False, batches)
        compiled = time_steps(cfg, True, batches)
    eager_s = sum(s for s, _ in eager[1:]) / args.steps
    compiled_s = sum(s for s, _ in compiled[1:]) / args.steps
    compile_s = sum(m.get("train/compile_s", 0.0) for _, m in compiled)
    saved = eager_s - compiled_s
    result = {
        "model": "tiny" if args.tiny else cfg.model.model, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "rows": batches[0][0].n, "tokens": cfg.training.max_tokens,
        "micro_batch_size": cfg.backend.micro_batch_size, "autocast": cfg.backend.autocast,
        "lora_rank": cfg.model.lora_rank, "compile_s": round(compile_s, 1),
        "first_step_s": {"eager": round(eager[0][0], 2), "compiled": round(compiled[0][0], 2)},
        "s_per_step": {"eager": round(eager_s, 3), "compiled": round(compiled_s, 3)},
        "pays_after_steps": round(compile_s / saved) if saved > 0 else None,
        "max_abs_loss_diff": max(abs(a["loss/objective"] - b["loss/objective"]) for (_, a), (_, b) in zip(eager, compiled)),
        "max_rel_grad_norm_diff": max(abs(a["train/grad_norm"] - b["train/grad_norm"]) / a["train/grad_norm"]
                                      for (_, a), (_, b) in zip(eager, compiled)),
    }
    print(json.dumps(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
