"""``math``: Hendrycks MATH (7 subjects, 5 levels), from the HF hub or from local files.

- ``[data] path = ""``: ``datasets.load_dataset("EleutherAI/hendrycks_math", subject)`` for each
  subject; training from the ``train`` split, held-out problems from ``test``.
- ``[data] path`` = a folder with ``train/`` and ``test/`` (the original MATH release: one JSON
  object per file under ``train/<subject>/*.json``; or .jsonl / .json / .parquet files), or a
  folder of files whose names contain ``train`` / ``test``, or one file: then ``[eval]
  num_problems`` rows are held out by a fixed hash order (never trained on).

Rows need ``problem`` and ``solution`` (``level`` "Level 3" and ``type`` "Algebra" are used by the
filters); the reference answer is the content of the solution's last ``\\boxed{}``; rows with none
are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retrain.environments.base import ListEnvironment, config_value, hold_out, stable_hash
from retrain.errors import ConfigError, did_you_mean
from retrain.types import Task

HF_DATASET = "EleutherAI/hendrycks_math"
SUBJECTS = ["algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
            "prealgebra", "precalculus"]
FORMATS = (".json", ".jsonl", ".parquet")


def subject_key(name: str) -> str:
    """"Counting & Probability" -> "counting_and_probability"."""
    return "_".join(name.strip().lower().replace("&", "and").split())


def parse_level(level: Any) -> int:
    """"Level 3" -> 3; unknown ("Level ?") -> 0."""
    digits = "".join(ch for ch in str(level) if ch.isdigit())
    return int(digits) if digits else 0


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of one .json (an object or a list), .jsonl or .parquet file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    from retrain.config import read_utf8

    text = read_utf8(path)
    try:
        if path.suffix == ".jsonl":
            rows = [(n, json.loads(line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        else:
            data = json.loads(text)
            rows = list(enumerate(data if isinstance(data, list) else [data], 1))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON ({e.msg}, line {e.lineno}).") from None
    for n, row in rows:
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: row {n} is {type(row).__name__}, expected an object with problem and solution.")
    return [row for _, row in rows]


def read_tree(root: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in FORMATS):
        for row in read_rows(file):
            if "type" not in row and file.parent != root:  # MATH release: train/<subject>/N.json
                row = {**row, "type": file.parent.name}
            rows.append(row)
    return rows


def load_local(path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(train rows, test rows or None when the files have no split)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise ConfigError(f'[data] path = "{path}": no such file or folder.')
    if root.is_file():
        return read_rows(root), None
    if (root / "train").is_dir() and (root / "test").is_dir():
        return read_tree(root / "train"), read_tree(root / "test")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in FORMATS)
    train = [p for p in files if "train" in p.name]
    test = [p for p in files if "test" in p.name]
    if train and test:
        return [r for p in train for r in read_rows(p)], [r for p in test for r in read_rows(p)]
    if not files:
        raise ConfigError(f'[data] path = "{path}": no {", ".join(FORMATS)} files in this folder.')
    return [r for p in files for r in read_rows(p)], None


def load_hub(subjects: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    try:
        import datasets
    except ImportError:
        raise ConfigError('[data] source = "math" without [data] path needs the `datasets` package: '
                          'pip install "retrain-core[data]" (or point [data] path at local MATH files).') from None
    train: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    for subject in subjects or SUBJECTS:
        try:
            parts = datasets.load_dataset(HF_DATASET, subject)
        except Exception as e:
            raise ConfigError(
                f'[data] source = "math": cannot load {HF_DATASET} ({subject}) from the Hugging Face hub '
                f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else 'no detail'}). Offline? Download "
                "MATH where there is a network and set [data] path to a folder with train/ and test/ "
                "(MATH json files) or to .jsonl/.parquet files with problem, solution, level, type.") from None
        train += [{**r, "type": r.get("type") or subject} for r in parts["train"]]
        test += [{**r, "type": r.get("type") or subject} for r in parts["test"]]
    return train, test


def rows_to_tasks(rows: list[dict[str, Any]], subjects: list[str], levels: list[int], split: str) -> list[Task]:
    from retrain.rewards.extract import extract_boxed

    tasks = []
    for row in rows:
        problem, solution = row.get("problem"), row.get("solution")
        if not isinstance(problem, str) or not isinstance(solution, str):
            continue
        answer = row.get("answer") if isinstance(row.get("answer"), str) else extract_boxed(solution)
        subject, level = subject_key(str(row.get("type", ""))), parse_level(row.get("level", ""))
        if answer is None or (subjects and subject not in subjects) or (levels and level not in levels):
            continue
        tasks.append(Task(problem, answer, f"math/{split}/{subject}/{stable_hash(problem):016x}",
                          {"level": level, "subject": subject, "solution": solution}))
    return tasks


class MathEnvironment(ListEnvironment):
    """Hendrycks MATH (HF EleutherAI/hendrycks_math or local files); answer = last \\boxed{} of the solution."""

    config_section = "data"

    def __init__(self, ctx: Any = None, path: str = "", subjects: list[str] | None = None,
                 levels: list[int] | None = None) -> None:
        subjects = [subject_key(s) for s in subjects or []]
        for s in subjects:
            if s not in SUBJECTS:
                raise ConfigError(f'[data] subjects: "{s}" is not a MATH subject.' + did_you_mean(s, SUBJECTS)
                                  + f" Subjects: {', '.join(SUBJECTS)}.")
        levels = list(levels or [])
        train_rows, test_rows = load_local(path) if path else load_hub(subjects)
        train = rows_to_tasks(train_rows, subjects, levels, "train")
        seed = int(config_value(ctx, "training", "seed", 0))
        if test_rows is None:
            train, held_out = hold_out(train, int(config_value(ctx, "eval", "num_problems", 64)))
        else:
            test = rows_to_tasks(test_rows, subjects, levels, "test")
            test_problems = {t.prompt for t in test}
            train = [t for t in train if t.prompt not in test_problems]  # never train on a test problem
            held_out = sorted(test, key=lambda t: stable_hash(f"eval/{t.id}"))  # fixed, seed-independent order
        super().__init__(train, held_out, seed=seed, label=f'[data] source = "math"{f" ({path})" if path else ""}')
