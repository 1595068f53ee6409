"""``jsonl``: your own tasks, one JSON object per line: ``{"prompt": ..., "answer": ...}``.

``prompt`` is text (it goes through ``[data] prompt_template``) or a list of chat messages
(``[{"role": "user", "content": ...}]``, used as is). ``answer`` is the reference the reward
checks; every row must have it (write ``"answer": ""`` when the reward needs none, so that a
forgotten answer is an error rather than a silent reward of 0). Optional ``id`` and ``split`` ("train" / "test"): with
split labels, held-out tasks are the test rows; without, ``[eval] num_problems`` rows are held
out by a fixed hash order. Other keys go into the task's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retrain.config import read_utf8
from retrain.environments.base import ListEnvironment, config_value, hold_out, stable_hash
from retrain.errors import ConfigError
from retrain.types import Task


def read_jsonl_tasks(path: str) -> list[tuple[str, Task]]:
    """(split, task) for each row of the file."""
    return [(split, task) for _, split, task in read_jsonl_rows(path)]


def read_jsonl_rows(path: str) -> list[tuple[int, str, Task]]:
    """(line number, split, task) for each row; every malformed row is a one-line ConfigError."""
    file = Path(path).expanduser()
    if not path:
        raise ConfigError('[data] source = "jsonl" needs [data] path = "tasks.jsonl" (rows {"prompt": ..., "answer": ...}).')
    if not file.is_file():
        raise ConfigError(f'[data] path = "{path}": no such file.')
    out = []
    for n, line in enumerate(read_utf8(file, f'[data] path = "{path}"').splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{n}: invalid JSON ({e.msg}).") from None
        if not isinstance(row, dict) or "prompt" not in row or not isinstance(row.get("answer", ""), str):
            raise ConfigError(f'{path}:{n}: expected {{"prompt": ..., "answer": "..."}} (answer a string).')
        if "answer" not in row:  # a missing key is a mistake far more often than a reward without references
            raise ConfigError(f'{path}:{n}: the row has no "answer"; write "answer": "" when the reward needs '
                              "no reference.")
        prompt = row["prompt"]
        if not isinstance(prompt, (str, list)):
            raise ConfigError(f"{path}:{n}: prompt must be a string or a list of chat messages.")
        meta = {k: v for k, v in row.items() if k not in ("prompt", "answer", "id", "split")}
        task_id = str(row.get("id") or f"jsonl/{stable_hash(json.dumps(prompt, sort_keys=True)):016x}")
        out.append((n, str(row.get("split", "")), Task(prompt, row.get("answer", ""), task_id, meta)))
    if not out:
        raise ConfigError(f'[data] path = "{path}": the file has no rows.')
    return out


def check_prompt_lengths(ctx: Any, path: str, rows: list[tuple[int, Task]]) -> None:
    """Each prompt, rendered as the run renders it, plus max_tokens must fit the model's context: one
    line naming the row before the first step (instead of a huge allocation at the first step)."""
    from retrain.train.guards import context_budget

    budget = context_budget(ctx)
    tokenizer = getattr(ctx, "tokenizer", None)
    if budget is None or tokenizer is None:
        return
    from retrain.prompts import render_prompts

    context, max_tokens = budget
    prompt_ids = render_prompts(ctx.config, tokenizer, [task for _, task in rows])
    for (n, _), ids in zip(rows, prompt_ids, strict=True):
        if len(ids) + max_tokens > context:
            raise ConfigError(f"{path}:{n}: the prompt is {len(ids)} tokens; with max_tokens {max_tokens} that "
                              f"exceeds the model's context of {context} tokens. Shorten it or lower max_tokens.")


class JsonlEnvironment(ListEnvironment):
    """Tasks from a JSONL file of {"prompt": ..., "answer": ...} rows."""

    config_section = "data"

    def __init__(self, ctx: Any = None, path: str = "") -> None:
        numbered = read_jsonl_rows(path)
        self.path = path
        self.numbered = [(n, task) for n, _, task in numbered]  # (line number, task): check_prompts names the line
        rows = [(split, task) for _, split, task in numbered]
        seed = int(config_value(ctx, "training", "seed", 0))
        if any(split == "test" for split, _ in rows):
            train = [t for split, t in rows if split != "test"]
            held_out = [t for split, t in rows if split == "test"]
        else:
            train, held_out = hold_out([t for _, t in rows], int(config_value(ctx, "eval", "num_problems", 64)))
        super().__init__(train, held_out, seed=seed, label=f'[data] path = "{path}"')

    def check_prompts(self, ctx: Any) -> None:
        """Every row's prompt fits the model's context with max_tokens (called once the model is known)."""
        check_prompt_lengths(ctx, self.path, self.numbered)
