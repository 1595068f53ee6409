"""Learning against a plain anchor (issue 17.4): a hand-written GRPO loop and retrain's recipe,
same task, same step budget, same process, same device.

    python benchmarks/addition_anchor/anchor.py --model MODEL_DIR [--out result.json]   # the GPU run
    python benchmarks/addition_anchor/anchor.py --tiny                                  # CPU smoke test
    python benchmarks/addition_anchor/anchor.py --model MODEL_DIR --parity 1,2 [--out p.json]  # issue 18's parity

Task: 2-digit addition, A and B uniform in 10..99, the user message
``What is A + B? Put the final answer in \\boxed{}.`` through the model's chat template; reward 1
when the last ``\\boxed{}`` holds A + B. 128 held-out pairs (fixed; never trained on).

1. The anchor, a plain GRPO loop written out below: full fine-tuning, AdamW lr 5e-6, fp32
   weights with bf16 autocast, B = 32 prompts x G = 16 samples, 64 tokens, temperature 1,
   advantages (r - group mean) / (group std + 1e-4), no clipping (one optimizer step per batch,
   so the ratio is 1), token-mean loss, HF ``generate`` for sampling.
2. retrain's recipe for the workload (``RECIPE`` below; docs/default-run.md's settings: GRPO,
   LoRA r16 / alpha 32, lr 3e-4, temperature 0.7) through the ordinary training loop, with the
   same B, G, tokens, steps and held-out pairs (``[data] source = "jsonl"`` with split labels).

Printed and written (``--out``): held-out greedy accuracy before/after and training wall time of
each, and the ratios retrain / anchor. ``--tiny``: a random-init tiny model and a few steps, to
check that both paths run (the numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

USER = "What is {a} + {b}? Put the final answer in \\boxed{{}}."

#: retrain's recommended recipe for this workload (the default run's settings, docs/default-run.md)
RECIPE = {
    "model": {"lora_rank": 16, "lora_alpha": 32.0},
    "algorithm": {"advantage_mode": "grpo"},
    "training": {"lr": 3e-4, "temperature": 0.7},
}


def pairs(held_out: int, seed: int = 0) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(training pairs, held-out pairs): every (A, B) in 10..99 once, the held-out ones drawn first."""
    everything = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    random.Random(seed).shuffle(everything)
    return everything[held_out:], everything[:held_out]


def correct(text: str, a: int, b: int) -> bool:
    from retrain.rewards.extract import extract_boxed

    boxed = extract_boxed(text)
    return boxed is not None and boxed.strip() == str(a + b)


# -- 1. the plain loop --------------------------------------------------------------------------
def chat_ids(tok: Any, a: int, b: int) -> list[int]:
    ids = tok.apply_chat_template([{"role": "user", "content": USER.format(a=a, b=b)}], add_generation_prompt=True,
                                  tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def left_pad(rows: list[list[int]], pad: int, device: str) -> tuple[Any, Any]:
    import torch

    width = max(map(len, rows))
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)  # [N, P]
    att = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)  # [N, P]
    return ids, att


def generate(model: Any, tok: Any, prompts: list[list[int]], n: int, tokens: int, temperature: float,
             device: str) -> Any:
    """Completion ids [N*n, T] (EOS and padding after it = pad id), sampled (or greedy at 0)."""
    import torch

    ids, att = left_pad(prompts, tok.pad_token_id, device)
    with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
        # sampling from the plain softmax(logits / T): no top-k (generate's default is 50), no top-p
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 \
            else {"do_sample": False}
        out = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=tokens, num_return_sequences=n,
                             pad_token_id=tok.pad_token_id, **sampling)
    return out[:, ids.shape[1]:]  # [N, T']


def accuracy(model: Any, tok: Any, held: list[tuple[int, int]], tokens: int, device: str) -> float:
    comp = generate(model, tok, [chat_ids(tok, a, b) for a, b in held], 1, tokens, 0.0, device)
    texts = tok.batch_decode(comp, skip_special_tokens=True)
    return sum(correct(t, a, b) for t, (a, b) in zip(texts, held, strict=True)) / len(held)


def plain_grpo(model_dir: str, train: list[tuple[int, int]], held: list[tuple[int, int]], *, steps: int, b: int,
               g: int, tokens: int, lr: float, device: str, seed: int) -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)  # fp32 master weights
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    initial = [p.detach().clone() for p in model.parameters()]  # to count the weights that moved
    before = accuracy(model, tok, held, tokens, device)
    rng = random.Random(seed)
    start, rewards = time.perf_counter(), []
    for _ in range(steps):
        batch = rng.sample(train, b)
        prompts = [chat_ids(tok, x, y) for x, y in batch]
        model.eval()
        comp = generate(model, tok, prompts, g, tokens, 1.0, device)  # [N, T] with N = B*G, groups contiguous
        texts = tok.batch_decode(comp, skip_special_tokens=True)
        r = torch.tensor([float(correct(t, *batch[i // g])) for i, t in enumerate(texts)], device=device)  # [N]
        rg = r.view(b, g)  # [B, G]
        adv = ((rg - rg.mean(1, keepdim=True)) / (rg.std(1, keepdim=True) + 1e-4)).view(-1)  # [N]
        # completion mask: tokens up to and including the first EOS
        is_pad = comp == tok.pad_token_id  # [N, T]
        eos = comp == tok.eos_token_id  # [N, T]
        after_eos = (eos.cumsum(1) - eos.long()) > 0  # [N, T]: strictly after the first EOS
        mask = (~after_eos & ~(is_pad & ~eos)).float()  # [N, T]
        ids, att = left_pad([p for p in prompts for _ in range(g)], tok.pad_token_id, device)  # [N, P]
        full = torch.cat([ids, comp], 1)  # [N, P+T]
        full_att = torch.cat([att, torch.ones_like(comp)], 1)  # [N, P+T]
        pos = (full_att.cumsum(1) - 1).clamp(min=0)  # [N, P+T]
        model.train()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            logits = model(input_ids=full, attention_mask=full_att, position_ids=pos,
                           logits_to_keep=comp.shape[1] + 1).logits[:, :-1]  # [N, T, V]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, comp.unsqueeze(-1)).squeeze(-1)  # [N, T]
        loss = -(adv[:, None] * logp * mask).sum() / mask.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rewards.append(float(r.mean()))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    after = accuracy(model, tok, held, tokens, device)
    moved = sum(int((p.detach() != p0).sum()) for p, p0 in zip(model.parameters(), initial, strict=True))
    total = sum(p.numel() for p in initial)
    return {"before": before, "after": after, "train_seconds": wall, "reward_first": rewards[0],
            "reward_last": rewards[-1], "weights_changed": moved / total}


# -- 2. retrain's recipe -------------------------------------------------------------------------
def write_tasks(path: Path, train: list[tuple[int, int]], held: list[tuple[int, int]]) -> Path:
    rows = [{"prompt": [{"role": "user", "content": USER.format(a=a, b=b)}], "answer": str(a + b), "split": split}
            for split, chunk in (("train", train), ("test", held)) for a, b in chunk]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def retrain_recipe(model_dir: str, tasks: Path, run_root: Path, *, steps: int, b: int, g: int, tokens: int,
                   held: int, seed: int, tiny: bool, max_staleness: int = 0, name: str = "retrain") -> dict[str, float]:
    from retrain.campaign import rundir
    from retrain.config import load_config
    from retrain.plugins import load_plugins
    from retrain.train.runner import train

    sets = {**{f"{s}.{k}": v for s, kv in RECIPE.items() for k, v in kv.items()},
            "model.model": model_dir, "training.max_steps": steps, "training.batch_size": b,
            "training.group_size": g, "training.max_tokens": tokens, "training.seed": seed,
            "training.save_every": 0, "training.max_staleness": max_staleness, "data.source": "jsonl", "data.path": str(tasks),
            "reward.type": "math", "reward.fallback": "none", "eval.num_problems": held, "eval.max_tokens": tokens,
            "logging.log_dir": str(run_root), "logging.run_name": name, "logging.loggers": ["jsonl"]}
    if tiny:
        sets["reward.workers"] = 1
    toml = "".join(f"{k} = {json.dumps(v)}\n" for k, v in sets.items())
    cfg_path = run_root / f"{name}.toml"
    run_root.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(_nest(toml))
    start = time.perf_counter()
    run_dir = train(load_config(cfg_path), load_plugins(), config_path=cfg_path)
    wall = time.perf_counter() - start
    rows = rundir.read_metrics(run_dir)
    evals = [r["eval/pass@1"] for r in rows if "eval/pass@1" in r]
    step_seconds = sum(r.get("time/step", 0.0) for r in rows)
    return {"before": evals[0], "after": evals[-1], "train_seconds": step_seconds, "total_seconds": wall,
            "max_staleness": max_staleness, "seed": seed,
            "reward_first": next(r["reward/mean"] for r in rows if "reward/mean" in r),
            "reward_last": [r["reward/mean"] for r in rows if "reward/mean" in r][-1]}


def _nest(flat: str) -> str:
    """``section.key = v`` lines -> TOML tables."""
    sections: dict[str, list[str]] = {}
    for line in flat.splitlines():
        key, _, value = line.partition(" = ")
        section, _, name = key.partition(".")
        sections.setdefault(section, []).append(f"{name} = {value}")
    return "".join(f"[{s}]\n" + "\n".join(lines) + "\n\n" for s, lines in sections.items())


def setup(args: argparse.Namespace) -> tuple[Path, str, tuple[int, int, int, int, int, float]]:
    """(scratch folder, model folder, (steps, B, G, tokens, held-out pairs, anchor lr)) of the workload."""
    import torch

    work = Path(tempfile.mkdtemp(prefix="anchor-"))
    if args.tiny:
        from retrain.testing.models import tiny_model_dir

        torch.set_num_threads(1)
        return work, str(tiny_model_dir(work / "tiny")), (args.steps or 2, 4, 4, 8, 8, 5e-6)
    from retrain.models import SMOLLM2_ID, resolve_model_source

    model_dir = args.model or resolve_model_source(SMOLLM2_ID).path
    return work, model_dir, (args.steps or 40, 32, 16, 64, 128, 5e-6)


def parity(args: argparse.Namespace, seeds: list[int]) -> dict[str, Any]:
    """Issue 18's learning parity: retrain's recipe with max_staleness 0 and 1, the same seeds and step budget."""
    work, model_dir, (steps, b, g, tokens, held_n, _) = setup(args)
    train_pairs, held = pairs(held_n)
    tasks = write_tasks(work / "tasks.jsonl", train_pairs, held)
    runs = [retrain_recipe(model_dir, tasks, work / "runs", steps=steps, b=b, g=g, tokens=tokens, held=held_n,
                           seed=seed, tiny=args.tiny, max_staleness=k, name=f"staleness{k}-s{seed}")
            for seed in seeds for k in (0, 1)]
    for r in runs:
        print(f"max_staleness {r['max_staleness']} seed {r['seed']}: held-out greedy {100 * r['before']:.1f}% -> "
              f"{100 * r['after']:.1f}%  steps {r['train_seconds']:.1f} s ({r['total_seconds']:.1f} s in all)")
    result = {"steps": steps, "B": b, "G": g, "tokens": tokens, "held_out": held_n, "recipe": RECIPE, "runs": runs}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder (the converted SmolLM2 GGUF); default: resolve SmolLM2 offline")
    ap.add_argument("--tiny", action="store_true", help="a random-init tiny model, a few steps (CPU smoke test)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parity", default="", help="learning parity instead (issue 18): retrain's recipe only, for "
                    "each max_staleness in 0,1 and each seed of this list, e.g. 1,2,3")
    args = ap.parse_args(argv)
    if args.parity:
        return parity(args, [int(x) for x in args.parity.split(",") if x])
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    work, model_dir, (steps, b, g, tokens, held_n, lr) = setup(args)
    train_pairs, held = pairs(held_n)
    anchor = plain_grpo(model_dir, train_pairs, held, steps=steps, b=b, g=g, tokens=tokens, lr=lr, device=device,
                        seed=args.seed)
    ours = retrain_recipe(model_dir, write_tasks(work / "tasks.jsonl", train_pairs, held), work / "runs",
                          steps=steps, b=b, g=g, tokens=tokens, held=held_n, seed=args.seed, tiny=args.tiny)
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "steps": steps, "B": b, "G": g,
              "tokens": tokens, "held_out": held_n, "anchor": anchor, "retrain": ours, "recipe": RECIPE,
              "accuracy_gain_ratio": ((ours["after"] - ours["before"]) / (anchor["after"] - anchor["before"])
                                      if anchor["after"] != anchor["before"] else None),
              "speedup": anchor["train_seconds"] / ours["train_seconds"] if ours["train_seconds"] else None}
    for name, r in (("plain GRPO loop", anchor), ("retrain recipe", ours)):
        print(f"{name:16s} held-out greedy {100 * r['before']:.1f}% -> {100 * r['after']:.1f}%  "
              f"train {r['train_seconds']:.1f} s for {steps} steps")
    print(f"retrain / plain: accuracy {100 * ours['after']:.1f}% vs {100 * anchor['after']:.1f}%, "
          f"time {ours['train_seconds']:.1f} s vs {anchor['train_seconds']:.1f} s "
          f"({result['speedup']:.2f}x faster)" if result["speedup"] else "")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
