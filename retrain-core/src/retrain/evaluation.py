"""Held-out evaluation: greedy pass@1 and sampled pass@k on ``[eval] num_problems`` tasks.

``run_eval(ctx, parts, step)`` is a function of the run's parts (``retrain.train.parts``): it
renders ``environment.eval_tasks(n)`` with the run's prompt (``[data]`` template and system prompt,
the tokenizer's chat template) or lets an environment with its own episodes run them, generates

- one greedy completion per problem (temperature 0) -> ``eval/pass@1``;
- when ``[eval] pass_k = k > 1``: k samples per problem at ``[training] temperature`` with a fixed
  seed -> ``eval/pass@k`` (named with the number, e.g. ``eval/pass@8``: the fraction of problems
  with at least one correct sample; with exactly k samples the unbiased estimator is this) and
  ``eval/mean@k`` (the mean correctness of all samples);

scores them with the run's reward (``parts.reward``: ``[reward] type`` or the environment's own; a
completion is correct when its reward is >= 1), and writes
``<run dir>/eval/step_<N>.json`` with every problem, completion and score plus the prompt identity.
Other metrics: ``eval/reward_mean``, ``eval/boxed_rate`` (completions with a complete ``\\boxed{}``),
``eval/completion_len`` (tokens), ``eval/truncated`` (fraction that hit max_tokens),
``eval/timeouts``, ``eval/errors``, ``eval/seconds``.

The training loop calls it every ``[eval] every`` steps; ``retrain eval`` (``retrain.cli.eval_cmd``)
builds the parts as a run does and calls it once. Back pressure does not chunk evaluation: it
samples from ``parts.engine`` itself, in chunks of ``[eval] batch_size`` problems when that is set
(concurrent runs on one GPU: the KV cache of num_problems * pass_k rows at once can be tens of GB).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.train.episodes import episodes_for
from retrain.types import Generation, SamplingParams

if TYPE_CHECKING:
    from retrain.train.episodes import Episodes
    from retrain.train.parts import Parts
    from retrain.types import RunContext, Task

EVAL_SEED = 1234  # the pass@k samples are the same for every evaluation of a run
CORRECT = 1.0 - 1e-6


def _eval_max_tokens(cfg: Any) -> int:
    return cfg.eval.max_tokens or cfg.training.max_tokens


def _generate(episodes: Episodes, tasks: list[Task], params: SamplingParams, batch_size: int) -> Generation:
    """All tasks' rows (groups contiguous), in chunks of ``batch_size`` tasks (0 = one call).

    A chunk starting at task i samples with ``seed + i`` and ``row_offset = i``: a fixed draw for a given
    batch size, not the one-call draw; greedy rows do not depend on the batch size."""
    if batch_size <= 0 or batch_size >= len(tasks):
        return episodes.run(tasks, params)[1]
    chunks = [episodes.run(tasks[i:i + batch_size], replace(params, seed=params.seed + i, row_offset=i))[1]
              for i in range(0, len(tasks), batch_size)]
    return Generation.concat(chunks, what="evaluation chunks")


def run_eval(ctx: RunContext, parts: Parts, step: int, report_path: Path | None = None) -> dict[str, float]:
    """Evaluate the engine's current policy; returns ``eval/*`` metrics and writes the per-problem report
    to ``report_path`` (default ``<run dir>/eval/step_<step>.json``; none without a run dir)."""
    from retrain.prompts import prompt_identity
    from retrain.rewards.extract import extract_boxed

    cfg = ctx.config
    reward = parts.reward
    episodes = episodes_for(ctx, parts.environment, parts.engine)  # the engine itself: no back-pressure chunks
    start = time.monotonic()
    tasks = parts.environment.eval_tasks(cfg.eval.num_problems)
    references = [t.answer for t in tasks]
    max_tokens = _eval_max_tokens(cfg)

    greedy = _generate(episodes, tasks, SamplingParams(n=1, max_tokens=max_tokens, temperature=0.0, seed=EVAL_SEED),
                       cfg.eval.batch_size)
    scored = reward.score(greedy.texts, references)
    correct = [r >= CORRECT for r in scored.rewards]
    n = max(1, len(tasks))
    metrics = {
        "eval/pass@1": sum(correct) / n,
        "eval/reward_mean": sum(scored.rewards) / n,
        "eval/boxed_rate": sum(extract_boxed(t) is not None for t in greedy.texts) / n,
        "eval/completion_len": sum(len(c) for c in greedy.completion_ids) / n,
        "eval/truncated": sum(f == "length" for f in greedy.finish_reasons) / n,
        "eval/timeouts": float(scored.timeouts),
        "eval/errors": float(scored.errors),
        "eval/unparsed_refs": float(getattr(scored, "unparsed_refs", 0)),
    }
    problems = [{"id": t.id, "prompt": t.prompt, "answer": t.answer, "completion": greedy.texts[i],
                 "reward": scored.rewards[i], "correct": correct[i], "finish_reason": greedy.finish_reasons[i]}
                for i, t in enumerate(tasks)]

    k = cfg.eval.pass_k
    if k > 1:
        sampled = _generate(episodes, tasks, SamplingParams(n=k, max_tokens=max_tokens, top_p=cfg.training.top_p,
                                                            temperature=cfg.training.temperature, seed=EVAL_SEED),
                            cfg.eval.batch_size)
        refs_k = [r for r in references for _ in range(k)]  # groups contiguous: [N = n*k]
        scored_k = reward.score(sampled.texts, refs_k)
        hits = [r >= CORRECT for r in scored_k.rewards]
        per_problem = [hits[i * k:(i + 1) * k] for i in range(len(tasks))]
        metrics[f"eval/pass@{k}"] = sum(any(h) for h in per_problem) / n
        metrics[f"eval/mean@{k}"] = sum(hits) / max(1, len(hits))
        metrics["eval/timeouts"] += scored_k.timeouts
        metrics["eval/errors"] += scored_k.errors
        for i, row in enumerate(problems):
            row["samples"] = [{"completion": sampled.texts[i * k + j], "reward": scored_k.rewards[i * k + j]}
                              for j in range(k)]
            row[f"pass@{k}"] = any(per_problem[i])
    metrics["eval/seconds"] = time.monotonic() - start

    if report_path is None and ctx.run_dir is not None:
        report_path = Path(ctx.run_dir) / "eval" / f"step_{step}.json"
    if report_path is not None:
        write_report(report_path, {
            "step": step, "policy_version": greedy.policy_version, "metrics": metrics,
            "prompt": prompt_identity(cfg, ctx.tokenizer), "reward": cfg.reward.type, "max_tokens": max_tokens,
            "problems": problems})
    return metrics


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write atomically (temp file + rename): a report is either complete or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
    tmp.replace(path)
