"""Held-out evaluation with a real tiny model, the local backend and the pytorch engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from retrain.config import config_from_dict
from retrain.evaluation import run_eval
from retrain.plugins import load_plugins
from retrain.train.parts import build_parts, close_parts
from retrain.types import RunContext

SCORER = textwrap.dedent('''
    def even_length(response, reference):
        """A deterministic stand-in for correctness that a random tiny model hits about half the time."""
        return 1.0 if len(response) % 2 == 0 else 0.0
''')


def write_tasks(path: Path, n: int = 12) -> None:
    path.write_text("".join(json.dumps({"prompt": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(n)))


@pytest.fixture()
def setup(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "eval_scorer.py").write_text(SCORER)
    monkeypatch.chdir(tmp_path)
    write_tasks(tmp_path / "tasks.jsonl")
    cfg = config_from_dict({
        "model": {"model": str(tiny_model), "lora_rank": 0},
        "backend": {"devices": "cpu"},
        "training": {"max_tokens": 12, "temperature": 1.0},
        "data": {"source": "jsonl", "path": str(tmp_path / "tasks.jsonl")},
        "reward": {"type": "eval_scorer.even_length", "timeout": 5.0},
        "eval": {"num_problems": 5, "pass_k": 3},
    })
    ctx = RunContext(config=cfg, registry=load_plugins(), run_dir=tmp_path / "run")
    parts = build_parts(ctx)  # local backend, pytorch engine, jsonl tasks, the dotted scorer
    yield ctx, parts
    close_parts(parts)


def test_run_eval_metrics_match_the_report(setup) -> None:
    ctx, parts = setup
    metrics = run_eval(ctx, parts, step=0)
    report = json.loads((ctx.run_dir / "eval" / "step_0.json").read_text())
    problems = report["problems"]
    assert [p["id"] for p in problems] == [t.id for t in parts.environment.eval_tasks(5)]
    assert metrics["eval/pass@1"] == sum(p["correct"] for p in problems) / 5
    assert all(p["correct"] == (len(p["completion"]) % 2 == 0) for p in problems)
    assert metrics["eval/pass@3"] == sum(any(s["reward"] == 1.0 for s in p["samples"]) for p in problems) / 5
    assert metrics["eval/mean@3"] == sum(s["reward"] for p in problems for s in p["samples"]) / 15
    assert metrics["eval/pass@3"] >= metrics["eval/mean@3"]
    assert (metrics["eval/timeouts"], metrics["eval/errors"]) == (0.0, 0.0)
    assert report["prompt"]["prompt_template"] == ctx.config.data.prompt_template and report["max_tokens"] == 12
    assert report["metrics"] == metrics


def test_greedy_is_argmax_decoding_and_repeatable(setup) -> None:
    import torch
    from retrain.prompts import render_prompt_ids

    ctx, parts = setup
    first = run_eval(ctx, parts, step=1)
    second = run_eval(ctx, parts, step=2)
    strip = lambda m: {k: v for k, v in m.items() if k != "eval/seconds"}  # noqa: E731
    assert strip(first) == strip(second)  # greedy and the fixed pass@k seed: same policy, same numbers
    report = json.loads((ctx.run_dir / "eval" / "step_1.json").read_text())
    task = parts.environment.eval_tasks(1)[0]
    ids = torch.tensor([render_prompt_ids(ctx.tokenizer, task, "", ctx.config.data.prompt_template)])
    with torch.no_grad():
        out = ctx.backend.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                         pad_token_id=ctx.tokenizer.pad_token_id)
    expected = ctx.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert report["problems"][0]["completion"] == expected


def test_batch_size_chunks_the_engine_calls_and_keeps_greedy(setup) -> None:
    ctx, parts = setup
    whole = run_eval(ctx, parts, step=1)
    calls: list[tuple[int, int, int | None]] = []  # (prompts, seed, row_offset) of each engine call
    generate = parts.engine.generate

    def counting(prompt_ids, params):
        calls.append((len(prompt_ids), params.seed, params.row_offset))
        return generate(prompt_ids, params)

    parts.engine.generate = counting
    ctx.config.eval.batch_size = 2
    chunked = run_eval(ctx, parts, step=2)
    # 5 problems in chunks of 2: greedy (n=1), then pass@3 (n=3), each keyed by the chunk's first problem
    assert calls == [(2, 1234, 0), (2, 1236, 2), (1, 1238, 4)] * 2
    reports = [json.loads((ctx.run_dir / "eval" / f"step_{s}.json").read_text())["problems"] for s in (1, 2)]
    assert [p["completion"] for p in reports[1]] == [p["completion"] for p in reports[0]]
    assert chunked["eval/pass@1"] == whole["eval/pass@1"]
    assert [len(p["samples"]) for p in reports[1]] == [3] * 5
    assert chunked["eval/mean@3"] == sum(s["reward"] for p in reports[1] for s in p["samples"]) / 15


def test_eval_command_on_the_base_model(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "eval_scorer.py").write_text(SCORER)
    write_tasks(tmp_path / "tasks.jsonl")
    (tmp_path / "run.toml").write_text(textwrap.dedent(f'''
        [model]
        model = "{tiny_model}"
        lora_rank = 0
        [backend]
        devices = "cpu"
        [training]
        max_tokens = 8
        [data]
        source = "jsonl"
        path = "tasks.jsonl"
        [reward]
        type = "eval_scorer.even_length"
        [logging]
        log_dir = "{tmp_path / 'runs'}"
    '''))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "retrain.cli.main", "eval", "run.toml", "--num-problems", "4"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report_path = tmp_path / "runs" / "run-eval" / "eval" / "step_0.json"
    assert f"report: {report_path}" in proc.stdout
    report = json.loads(report_path.read_text())
    assert len(report["problems"]) == 4
    assert f"{'eval/pass@1':<22} {report['metrics']['eval/pass@1']:.4f}\n" in proc.stdout
