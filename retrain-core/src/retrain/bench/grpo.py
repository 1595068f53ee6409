"""GRPO step benchmark on one GPU: retrain's local backend + pytorch engine against TRL's GRPOTrainer.

The workload is the peer's (``trl_grpo_peer.py``): a random-init Qwen2.5-0.5B-shaped model
(vocab 151936), B = 8 prompts of 128 random tokens x G = 16 samples x L = 256 forced tokens
(``min_tokens = L``: throughput does not depend on the weights), LoRA r32 on all linear layers,
one optimizer step per batch. Each step goes through the same components as ``retrain.train.loop``:
``engine.generate`` -> ``Rollouts`` -> reward -> ``credit.compute`` (GRPO) -> ``backend.train_step``
-> ``engine.sync``. The first step (graph capture, allocator warm-up) is not counted.

Printed: seconds per step, generation and training tokens/s, the phase breakdown, peak memory,
generation against the memory-bandwidth floor, a USL fit of generation throughput over
concurrency, and with ``--peer`` the TRL peer run in a subprocess of the same call and the ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VOCAB = 151936
#: keys of a step's row that are not phase seconds (neither averaged as time nor printed as a phase)
NOT_PHASES = ("step", "gen_tokens", "micro_batch_rows")


def build_model_dir(path: Path, layers: int = 24, vocab: int = VOCAB) -> Path:
    """Random-init Qwen2.5-0.5B shape + a word-level tokenizer ``t0 .. t151935`` (pad t1, eos t2)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

    tk = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="t1", eos_token="t2", unk_token="t0")
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=896, intermediate_size=4864, num_hidden_layers=layers,
                      num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=True, pad_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def copy_bandwidth(device: str) -> float:
    """Device-to-device copy bandwidth, bytes read + written per second (the memory ceiling)."""
    import torch

    a = torch.randn(2**28, device=device)  # 1 GiB
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    torch.cuda.synchronize()
    bw = 10 * 2 * a.numel() * 4 / (time.perf_counter() - t)
    del a, b
    torch.cuda.empty_cache()
    return bw


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):  # an [inference] device samples on a GPU of its own
            torch.cuda.synchronize(i)


def run_retrain(args: Any, model_dir: Path) -> dict[str, Any]:
    import random

    import torch

    from retrain.advantages.credit import build_credit
    from retrain.config import load_config
    from retrain.plugins import load_plugins
    from retrain.types import Rollouts, RunContext, SamplingParams, Task

    b, g, length, plen = args.prompts, args.group, args.tokens, args.prompt_len
    cfg = load_config(None, {
        "model.model": str(model_dir), "model.lora_rank": args.lora, "model.lora_alpha": 2.0 * args.lora,
        "training.batch_size": b, "training.group_size": g, "training.max_tokens": length,
        "training.temperature": 1.0, "training.lr": 1e-5, "algorithm.advantage_mode": "grpo",
        "backend.micro_batch_size": args.micro_batch, "backend.logprob_chunk": args.logprob_chunk,
        "backend.compile": args.compile_train, "inference.device": args.inference_device})
    reg = load_plugins()
    ctx = RunContext(config=cfg, registry=reg)
    backend = reg.build("backend", "local", ctx=ctx)
    ctx.backend, ctx.tokenizer = backend, backend.tokenizer
    engine = reg.build("engine", "pytorch", ctx=ctx)
    credit = build_credit(ctx)
    rng = random.Random(0)

    def collect(step: int) -> tuple[Rollouts, torch.Tensor, float]:
        """B random prompts -> N rollouts [N, T], rewards [N], generation seconds."""
        prompt_ids = [[rng.randrange(10, args.vocab) for _ in range(plen)] for _ in range(b)]  # B prompts
        tasks = [Task(prompt="", answer="") for _ in range(b)]
        t = time.perf_counter()
        gen = engine.generate(prompt_ids, SamplingParams(n=g, max_tokens=length, temperature=1.0, seed=step,
                                                         min_tokens=length))
        gen_s = time.perf_counter() - t  # the tokens are on the host: generation is done
        rewards = torch.tensor([float(len(x) % 3 == 0) for x in gen.texts])  # [N], as the peer
        return Rollouts.from_generation(tasks, prompt_ids, gen, g), rewards, gen_s

    if args.max_staleness:
        steps, mm, compile_s = one_step_off(args, engine, backend, credit, collect)
    else:
        steps, mm, compile_s = synchronous(args, engine, backend, credit, collect)
    steady = steps[1:]
    mean = {k: sum(r[k] for r in steady) / len(steady) for k in steady[0] if k not in NOT_PHASES}
    n = b * g
    out = {
        "peer": "retrain", "prompts": b, "G": g, "L": length, "lora": args.lora, "max_staleness": args.max_staleness,
        "inference_device": args.inference_device,
        "fast_path": getattr(engine, "_fast_decoder", None) is not None,
        "compiled_trainer": backend.compiled is not None and backend.compiled.active,
        "trainer_compile_s": round(compile_s, 1),
        "contend": args.contend, "micro_batch": args.micro_batch, "micro_batch_rows": [r["micro_batch_rows"] for r in steps],
        "s_per_step": round(mean["s"], 3),
        "phases_s": {k: round(v, 3) for k, v in mean.items() if k != "s"},
        "gen_tok_per_s": round(n * length / mean["generate"], 1),
        "gen_tok_per_s_incl_train": round(n * length / mean["s"], 1),
        "train_tok_per_s": round(n * (plen + length) / mean["train"], 1),
        "engine_trainer_abs_logprob_delta": round(sum(mm[1:]) / len(mm[1:]), 5),
        "peak_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
    }
    out["extra"] = {"engine": engine, "backend": backend}
    return out


def report(row: dict[str, Any], metrics: dict[str, float], mm: list[float]) -> None:
    mm.append(metrics.get("mismatch/abs_logprob_delta", float("nan")))
    phases = ", ".join(f"{k} {v:.2f}" for k, v in row.items() if k not in (*NOT_PHASES, "s"))
    print(f"retrain step {row['step']}: {row['s']:.2f}s ({phases}) tokens {row['gen_tokens']} "
          f"|engine-trainer logprob| {mm[-1]:.4f}"
          + (f" (trainer compile {metrics['train/compile_s']:.1f}s)" if "train/compile_s" in metrics else ""),
          flush=True)


def synchronous(args: Any, engine: Any, backend: Any, credit: Any, collect: Any) -> tuple[list, list, float]:
    """``max_staleness = 0``: generate, score, credit, train, sync, one after the other; per-step phases."""
    from retrain.bench.contention import contention
    from retrain.train.loop import check_policy_version

    steps: list[dict[str, Any]] = []
    mm: list[float] = []
    compile_s = 0.0
    for step in range(args.steps + 1):
        sync()
        t0 = time.perf_counter()
        rollouts, rewards, _ = collect(step)
        sync()
        t1 = time.perf_counter()
        token_adv, _ = credit.compute(rewards, rollouts, step)  # [N, T]
        check_policy_version(rollouts.policy_version, backend.version, 0)  # the loop's own invariant
        sync()
        t2 = time.perf_counter()
        with contention(args.contend):
            metrics = backend.train_step(rollouts, token_adv, importance_correction=False)
            compile_s += metrics.get("train/compile_s", 0.0)  # [backend] compile: the steps that compiled
            sync()
        t3 = time.perf_counter()
        engine.sync(backend, backend.version)
        sync()
        t4 = time.perf_counter()
        row = {"step": step, "s": t4 - t0, "generate": t1 - t0, "reward_credit": t2 - t1, "train": t3 - t2,
               "sync": t4 - t3, "gen_tokens": int(rollouts.mask.sum()),
               "micro_batch_rows": metrics.get("memory/micro_batch_rows", 0.0)}
        steps.append(row)
        report(row, metrics, mm)
    if args.profile:
        profile_step(args, engine, backend, credit, collect)
    return steps, mm, compile_s


def profile_step(args: Any, engine: Any, backend: Any, credit: Any, collect: Any) -> None:
    """``--profile DIR``: one more synchronous step, its generation and training each under the profiler."""
    from retrain.bench.profile import profiled

    out = Path(args.profile)
    rollouts, rewards, _ = profiled(out / "profile-generate.txt", "generate", lambda: collect(args.steps + 1))
    token_adv, _ = credit.compute(rewards, rollouts, args.steps + 1)  # [N, T]
    profiled(out / "profile-train.txt", "train",
             lambda: backend.train_step(rollouts, token_adv, importance_correction=False))
    engine.sync(backend, backend.version)


def one_step_off(args: Any, engine: Any, backend: Any, credit: Any, collect: Any) -> tuple[list, list, float]:
    """``max_staleness = 1``, as ``retrain.train.schedule.OneStepOff`` runs it: the engine samples batch k+1 from
    its snapshot of version k-1 (on its own CUDA stream, in a thread) while step k trains; then it syncs.

    A step is timed from the start of its training to the end of its sync; ``generate`` is the sampler thread's
    own time (overlapped), ``wait`` how long the trainer waited for it after its optimizer step.
    """
    import threading

    import torch

    from retrain.train.loop import check_policy_version

    engine.sample_from_snapshot()
    steps: list[dict[str, Any]] = []
    mm: list[float] = []
    compile_s = 0.0
    batch = collect(0)  # the first batch, not overlapped
    for step in range(args.steps + 1):
        rollouts, rewards, gen_s = batch
        nxt: list[Any] = []
        sampler = threading.Thread(target=lambda s=step + 1, out=nxt: out.append(collect(s)), daemon=True)
        sync()
        t0 = time.perf_counter()
        sampler.start()  # also after the last step: every timed step overlaps the same way
        token_adv, _ = credit.compute(rewards, rollouts, step)  # [N, T]
        check_policy_version(rollouts.policy_version, backend.version, 1)  # the loop's own invariant
        behind = backend.version - rollouts.policy_version
        metrics = backend.train_step(rollouts, token_adv, importance_correction=behind > 0)
        compile_s += metrics.get("train/compile_s", 0.0)
        if torch.cuda.is_available():
            torch.cuda.current_stream().synchronize()  # the trainer's work only (the sampler has its own stream)
        t1 = time.perf_counter()
        sampler.join()
        t2 = time.perf_counter()
        engine.sync(backend, backend.version)
        sync()
        t3 = time.perf_counter()
        row = {"step": step, "s": t3 - t0, "generate": gen_s, "reward_credit": 0.0, "train": t1 - t0,
               "wait": t2 - t1, "sync": t3 - t2, "gen_tokens": int(rollouts.mask.sum()), "behind": behind,
               "micro_batch_rows": metrics.get("memory/micro_batch_rows", 0.0)}
        steps.append(row)
        report(row, metrics, mm)
        batch = nxt[0]
    return steps, mm, compile_s


def decode_bytes_per_step(dec: Any, rows: int, prompt_len: int, length: int) -> tuple[float, float]:
    """(floor, as implemented) bytes one decode step must move: weights once + the KV cache read.

    Floor: every weight but the embedding table once, plus K/V of the real context (prompt + half
    the completion on average). As implemented: the static cache is read over all its slots.
    """
    from retrain.backpressure import kv_bytes_per_token
    from retrain.engines.fast_decode import PAD_MULTIPLE

    weights = 0
    for name, value in dec.w.items():
        if name == "layers":
            weights += sum(t.numel() * t.element_size() for lw in value for t in lw.values() if t is not None)
        elif name not in ("embed", "inv_freq") and hasattr(value, "numel"):
            weights += value.numel() * value.element_size()
    kvb = kv_bytes_per_token(dec.layers, dec.kv_heads, dec.head_dim, 2)
    padded = -(-prompt_len // PAD_MULTIPLE) * PAD_MULTIPLE
    return (weights + rows * (prompt_len + length / 2) * kvb, weights + rows * (padded + length) * kvb)


def usl_probe(engine: Any, backend: Any, args: Any) -> dict[str, Any]:
    """Generation tokens/s over concurrency; USL fit; back-pressure target with the KV-cache cap."""
    import random

    from retrain.backpressure import BackpressureController, fit_usl, memory_cap_for_model

    dec = engine._fast_decoder
    rng = random.Random(1)
    points = []
    for p in args.usl:
        b = max(1, p // args.group)
        prompts = [[rng.randrange(10, args.vocab) for _ in range(args.prompt_len)] for _ in range(b)]
        times = []
        for rep in range(2):  # the first includes the graph capture for this shape
            sync()
            t = time.perf_counter()
            dec.generate(prompts, p // b, args.tokens, temperature=1.0, min_tokens=args.tokens, seed=rep)
            sync()
            times.append(time.perf_counter() - t)
        tps = (p // b) * b * args.tokens / times[-1]
        points.append((p, tps))
        print(f"usl probe: concurrency {p:5d}  {tps:10.0f} tok/s  ({times[-1]:.3f}s)", flush=True)
    if len({p for p, _ in points}) < 3:  # too few concurrencies for three parameters: report points only
        return {"points": [[p, round(x, 1)] for p, x in points]}
    fit = fit_usl(points)
    cap = memory_cap_for_model(backend.model, args.prompt_len, args.tokens, 0.9)
    ctl = BackpressureController(min_batch=min(args.usl), max_batch=max(args.usl) * 4, memory_cap=cap,
                                 warmup_probes=len(args.usl))
    ctl._probes = sorted({p for p, _ in points})
    for p, x in points:
        ctl.observe(p, x)
    return {"points": [[p, round(x, 1)] for p, x in points], "lambda": round(fit.lam, 2),
            "sigma": round(fit.sigma, 5), "kappa": fit.kappa, "peak": round(fit.peak, 1),
            "fit_rmse_rel": round(fit.rmse_rel, 4), "kv_memory_cap": cap, "controller_batch": ctl.next_batch()}


def plain_generation(engine: Any, args: Any) -> float:
    """Tokens/s of the plain transformers path (DynamicCache, eager) at the same batch."""
    import random

    from retrain.types import SamplingParams

    rng = random.Random(2)
    prompts = [[rng.randrange(10, args.vocab) for _ in range(args.prompt_len)] for _ in range(args.prompts)]
    os.environ["RETRAIN_FAST_DECODE"] = "0"
    try:
        sync()
        t = time.perf_counter()
        gen = engine.generate(prompts, SamplingParams(n=args.group, max_tokens=args.tokens, temperature=1.0))
        sync()
        dt = time.perf_counter() - t
    finally:
        os.environ.pop("RETRAIN_FAST_DECODE", None)
    return sum(len(x) for x in gen.completion_ids) / dt


def run_peer(peer: str, args: Any) -> dict[str, Any] | None:
    env = dict(os.environ, PROMPTS=str(args.prompts), G=str(args.group), L=str(args.tokens),
               STEPS=str(args.steps), LORA="1" if args.lora else "0", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, peer], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    last = None
    assert proc.stdout is not None
    for line in proc.stdout:
        print("  trl| " + line.rstrip()[:300], flush=True)
        if line.startswith("{"):
            last = line
    proc.wait()
    return json.loads(last) if last else None


def micro_batch_arg(text: str) -> int | str:
    """``--micro-batch``: a row count or "auto", as ``[backend] micro_batch_size``."""
    import argparse

    if text == "auto" or text.isdigit():
        return text if text == "auto" else int(text)
    raise argparse.ArgumentTypeError(f'"{text}" is neither a number of rows nor "auto" (0 = the whole batch)')


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="timed steps (one extra warm-up step runs first)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--lora", type=int, default=32)
    ap.add_argument("--micro-batch", type=micro_batch_arg, default=32,
                    help='[backend] micro_batch_size: rows, or "auto" (sized from free memory on a GPU)')
    ap.add_argument("--logprob-chunk", type=int, default=4096, help="[backend] logprob_chunk")
    ap.add_argument("--layers", type=int, default=24, help="decoder layers (24 = Qwen2.5-0.5B)")
    ap.add_argument("--vocab", type=int, default=VOCAB, help="vocabulary size (151936 = Qwen2.5)")
    ap.add_argument("--usl", type=lambda s: [int(x) for x in s.split(",") if x], default=[16, 32, 64, 128, 256, 512, 1024])
    ap.add_argument("--plain", action="store_true", help="also time the plain transformers generation path")
    ap.add_argument("--compile-train", action="store_true",
                    help="[backend] compile = true (torch.compile of the trained decoder); default false")
    ap.add_argument("--max-staleness", type=int, default=0, choices=(0, 1),
                    help="[training] max_staleness: 1 = sample the next batch while this one trains")
    ap.add_argument("--inference-device", default="", metavar="DEVICE",
                    help='[inference] device: sample on this GPU ("gpu:1") from a copy of the policy (split mode)')
    ap.add_argument("--contend", default="", choices=("", "gil", "gpu"),
                    help="a thread that contends with each training step for the GIL or the GPU only (diagnostic)")
    ap.add_argument("--profile", default="", metavar="DIR",
                    help="after the timed steps, profile one more step's generation and training (tables in DIR)")
    ap.add_argument("--peer", default="", help="path of trl_grpo_peer.py to run in a subprocess afterwards")
    ap.add_argument("--json", default="", help="write the results here")
    ap.add_argument("--model-dir", default="", help="keep the random-init model here and reuse it (default: a temp dir)")
    args = ap.parse_args(argv)

    import torch
    import transformers

    if args.profile and args.max_staleness:
        ap.error("--profile profiles a synchronous step: drop --max-staleness (or --profile)")
    if args.contend == "gpu" and not torch.cuda.is_available():
        ap.error("--contend gpu: this machine has no CUDA device (the contending thread runs matmuls on one)")
    info = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "transformers": transformers.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    try:
        import peft

        info["peft"] = peft.__version__
    except ImportError:
        pass
    print("env", json.dumps(info), flush=True)
    result: dict[str, Any] = {"env": info}
    if torch.cuda.is_available():
        result["copy_bw_TBps"] = round(copy_bandwidth("cuda") / 1e12, 3)
        print("copy bandwidth (read+write)", result["copy_bw_TBps"], "TB/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        model_dir = Path(args.model_dir) if args.model_dir else Path(tmp) / "qwen-0.5b-shape"
        if not (model_dir / "config.json").is_file():
            build_model_dir(model_dir, layers=args.layers, vocab=args.vocab)
            print(f"model dir built in {time.perf_counter() - t:.1f}s", flush=True)
        r = run_retrain(args, model_dir)
    extra = r.pop("extra")
    result["retrain"] = r
    engine, backend = extra["engine"], extra["backend"]
    dec = getattr(engine, "_fast_decoder", None)
    if dec is not None and torch.cuda.is_available():
        rows = args.prompts * args.group
        floor, impl = decode_bytes_per_step(dec, rows, args.prompt_len, args.tokens)
        bw = result["copy_bw_TBps"] * 1e12
        gen_s = r["phases_s"]["generate"]
        result["bandwidth"] = {"floor_bytes_per_step": floor, "impl_bytes_per_step": impl,
                               "floor_gen_s": round(args.tokens * floor / bw, 4),
                               "impl_bound_gen_s": round(args.tokens * impl / bw, 4), "measured_gen_s": gen_s,
                               "fraction_of_floor": round(args.tokens * floor / bw / gen_s, 3)}
        print("bandwidth", json.dumps(result["bandwidth"]), flush=True)
        if args.usl:
            result["usl"] = usl_probe(engine, backend, args)
            print("usl", json.dumps(result["usl"]), flush=True)
    if args.plain:
        result["plain_gen_tok_per_s"] = round(plain_generation(engine, args), 1)
        print("plain transformers generation", result["plain_gen_tok_per_s"], "tok/s", flush=True)
    del engine, backend, extra, dec
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if args.peer:
        result["trl"] = run_peer(args.peer, args)
    print_summary(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


def print_summary(res: dict[str, Any]) -> None:
    r, trl = res["retrain"], res.get("trl")
    print("\n== GRPO step benchmark:", res["env"]["gpu"], "| torch", res["env"]["torch"], "| transformers",
          res["env"]["transformers"])
    print(f"retrain: {r['s_per_step']:.2f} s/step  generate {r['gen_tok_per_s']:.0f} tok/s  "
          f"train {r['train_tok_per_s']:.0f} tok/s  peak {r['peak_GiB']} GiB  phases {r['phases_s']}  "
          f"fast path {r['fast_path']}")
    if "bandwidth" in res:
        bw = res["bandwidth"]
        print(f"generation vs memory-bandwidth floor: {bw['measured_gen_s']:.3f}s measured, {bw['floor_gen_s']:.3f}s "
              f"floor ({100 * bw['fraction_of_floor']:.0f}% of the bound)")
    if "usl" in res and "sigma" in res["usl"]:
        u = res["usl"]
        print(f"USL fit: lambda {u['lambda']} tok/s, sigma {u['sigma']}, kappa {u['kappa']:.3g}, p* {u['peak']}, "
              f"KV cap {u['kv_memory_cap']}, back-pressure batch {u['controller_batch']}")
    if "plain_gen_tok_per_s" in res:
        print(f"plain transformers generation: {res['plain_gen_tok_per_s']:.0f} tok/s")
    if trl:
        print(f"TRL {trl.get('trl')}: {trl['s_per_step']:.2f} s/step, peak {trl.get('peak_GiB')} GiB")
        print(f"RATIO TRL/retrain s/step: {trl['s_per_step'] / r['s_per_step']:.2f}x (goal >= 10)")
    print(json.dumps({k: v for k, v in res.items() if k != "env"}))
