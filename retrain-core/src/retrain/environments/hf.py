"""``hf``: any Hugging Face dataset, from the hub (or its cache) or local files, mapped onto tasks.

Where rows come from (``[data] path``, or a preset's):

- a local file (.parquet, .jsonl / .json, .arrow, .csv): one split, ``train``;
- a local folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``;
- any other local folder (e.g. a ``huggingface-cli download --local-dir`` copy of a hub repo):
  ``datasets.load_dataset(folder)`` infers the format and the splits from the file names;
- otherwise a hub id (``openai/gsm8k``): ``datasets.load_dataset(id, name)`` (the hub, or the
  Arrow cache of an earlier load), else the repo's files in the hub cache (``huggingface-cli
  download ID --repo-type dataset``). Set ``HF_HUB_OFFLINE=1`` to skip the network.

How a row becomes a task: ``prompt_field`` and ``answer_field`` name columns, or are templates
with ``{column}`` placeholders; ``answer_extract`` turns the answer text into the reference
(``as_is``, ``last_boxed``, ``gsm8k`` = the text after ``####``, or ``regex`` with
``answer_regex``'s first group); ``filters`` keep rows whose column values are listed.

Presets (``[data] preset``) are option sets of this one source, each overridable key by key.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

from retrain.environments.base import ListEnvironment, config_value, hold_out, stable_hash
from retrain.errors import ConfigError, did_you_mean
from retrain.types import Task

MATH_SUBJECTS = "algebra,counting_and_probability,geometry,intermediate_algebra,number_theory,prealgebra,precalculus"

#: name -> [data] options. A preset only fills the keys the config leaves empty.
PRESETS: dict[str, dict[str, str]] = {
    "gsm8k": {"path": "openai/gsm8k", "name": "main", "split": "train", "test_split": "test",
              "prompt_field": "question", "answer_field": "answer", "answer_extract": "gsm8k"},
    "math500": {"path": "HuggingFaceH4/MATH-500", "split": "test", "prompt_field": "problem",
                "answer_field": "answer", "answer_extract": "as_is"},
    "hendrycks_math": {"path": "EleutherAI/hendrycks_math", "name": MATH_SUBJECTS, "split": "train",
                       "test_split": "test", "prompt_field": "problem", "answer_field": "solution",
                       "answer_extract": "last_boxed"},
}
EXTRACTORS = ("as_is", "last_boxed", "gsm8k", "regex")
FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".arrow": "arrow", ".csv": "csv"}


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise ConfigError('[data] source = "hf" needs the `datasets` package: pip install "retrain-core[data]".') from None
    return datasets


def _is_saved_to_disk(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def hub_cache_snapshot(repo_id: str) -> str | None:
    """The folder of ``repo_id``'s files in the Hugging Face hub cache (what ``huggingface-cli
    download ID --repo-type dataset`` wrote), or None. ``datasets`` alone reads only its own
    Arrow cache when the hub is unreachable, not these files."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, repo_type="dataset", local_files_only=True)
    except Exception:
        return None


def load_splits(path: str, name: str = "") -> dict[str, Any]:
    """{split: rows (a datasets.Dataset)} for a local file, a folder or a hub id (one config)."""
    datasets = _datasets()
    local = Path(path).expanduser()
    try:
        if local.is_file():
            builder = FILE_BUILDERS.get(local.suffix)
            if builder is None:
                raise ConfigError(f'[data] path = "{path}": cannot read {local.suffix or "this"} files; '
                                  f"use one of {', '.join(FILE_BUILDERS)} or a dataset folder.")
            return dict(datasets.load_dataset(builder, data_files={"train": str(local)}))
        if local.is_dir() and _is_saved_to_disk(local):
            loaded = datasets.load_from_disk(str(local))
            return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
        if local.is_dir():
            return dict(datasets.load_dataset(str(local), name or None))
        if path.startswith((".", "/", "~")) or path.endswith(tuple(FILE_BUILDERS)):
            raise ConfigError(f'[data] path = "{path}": no such file or folder.')
        try:
            return dict(datasets.load_dataset(path, name or None))
        except Exception:
            snapshot = hub_cache_snapshot(path)
            if snapshot is None:
                raise
            return dict(datasets.load_dataset(snapshot, name or None))
    except ConfigError:
        raise
    except Exception as e:
        detail = str(e).splitlines()[0][:200] if str(e) else "no detail"
        if local.exists():
            raise ConfigError(f'[data] path = "{path}": datasets cannot read it ({type(e).__name__}: {detail}).') from None
        raise ConfigError(
            f'[data] path = "{path}"{f" (name {name!r})" if name else ""}: not in the local Hugging Face cache and '
            f"the hub is unreachable ({type(e).__name__}: {detail}). Offline? Where there is a network run "
            f"`huggingface-cli download {path} --repo-type dataset --local-dir DIR` (or "
            f"datasets.load_dataset(...).save_to_disk(DIR)), copy DIR here and set [data] path = \"DIR\".") from None


def _columns(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def render_field(row: dict[str, Any], field: str) -> Any:
    """A column's value, or ``field`` as a template with ``{column}`` placeholders."""
    if "{" not in field:
        return row[field]
    return field.format_map({c: row[c] for c in _columns(field)})


def extract_reference(text: str, how: str, regex: re.Pattern[str] | None) -> str | None:
    """The reference answer from an answer column's text; None when there is none to take."""
    from retrain.rewards.extract import extract_boxed

    if how == "last_boxed":
        return extract_boxed(text)
    if how == "gsm8k":
        _, sep, tail = text.rpartition("####")
        return tail.strip().replace(",", "") if sep else None
    if how == "regex":
        assert regex is not None
        m = regex.search(text)
        return (m.group(1) if m.groups() else m.group(0)).strip() if m else None
    return text.strip()


_SLICE = re.compile(r"^(?P<name>[^\[\]]+)(?:\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$")


def rows_of(splits: dict[str, list[Any]], spec: str, key: str, path: str) -> list[Any]:
    """The Datasets of ``spec``: a split name, or a slice of one as in ``datasets``
    (``train[:1000]``, ``train[10%:20%]``, ``test[-100:]``), applied to each config's rows."""
    m = _SLICE.match(spec.replace(" ", ""))
    if m is None:
        raise ConfigError(f'[data] {key} = "{spec}": expected a split name or a slice such as "train[:1000]" or '
                          '"train[10%:20%]".')
    name = m["name"]
    if name not in splits:
        raise ConfigError(f'[data] {key} = "{spec}": {path} has no split "{name}".' + did_you_mean(name, splits)
                          + f" Splits: {', '.join(sorted(splits))}.")
    if m["start"] is None and m["stop"] is None:
        return splits[name]

    def index(bound: str | None, n: int) -> int | None:
        if bound is None:
            return None
        return int(n * int(bound[:-1]) / 100) if bound.endswith("%") else int(bound)

    return [ds.select(range(len(ds))[index(m["start"], len(ds)):index(m["stop"], len(ds))]) for ds in splits[name]]


def _keep(row: dict[str, Any], filters: dict[str, Any]) -> bool:
    for column, allowed in filters.items():
        values = allowed if isinstance(allowed, list) else [allowed]
        if str(row.get(column)) not in {str(v) for v in values}:
            return False
    return True


class HFEnvironment(ListEnvironment):
    """Any Hugging Face dataset (hub, HF cache, or local parquet/jsonl/arrow/save_to_disk) mapped by column."""

    config_section = "data"

    def __init__(self, ctx: Any = None, preset: str = "", path: str = "", name: str = "", split: str = "",
                 test_split: str = "", prompt_field: str = "", answer_field: str = "", answer_extract: str = "",
                 answer_regex: str = "", filters: dict[str, Any] | None = None, subjects: list[str] | None = None,
                 levels: list[int] | None = None) -> None:
        if subjects or levels:  # the math source's keys: here they would be ignored, so refuse them
            raise ConfigError('[data] subjects and levels belong to source = "math"; with source = "hf" use '
                              'name = "algebra,geometry" (configs) and filters = {level = ["Level 4", "Level 5"]}.')
        if preset and preset not in PRESETS:
            raise ConfigError(f'[data] preset = "{preset}": no such preset.{did_you_mean(preset, PRESETS)} '
                              f"Presets: {', '.join(PRESETS)}.")
        given = {"path": path, "name": name, "split": split, "test_split": test_split, "prompt_field": prompt_field,
                 "answer_field": answer_field, "answer_extract": answer_extract}
        o = {**PRESETS.get(preset, {}), **{k: v for k, v in given.items() if v}}
        if not o.get("path"):
            raise ConfigError('[data] source = "hf" needs [data] path (a hub id such as "openai/gsm8k", or a local '
                              f"file or folder) or [data] preset ({', '.join(PRESETS)}).")
        if not o.get("prompt_field"):
            raise ConfigError(f'[data] source = "hf" ({o["path"]}): set [data] prompt_field to the question column '
                              '(or a template such as "{question}").')
        how = o.get("answer_extract") or ("regex" if answer_regex else "as_is")
        if how not in EXTRACTORS:
            raise ConfigError(f'[data] answer_extract = "{how}": must be one of {", ".join(EXTRACTORS)}.'
                              + did_you_mean(how, EXTRACTORS))
        if (how == "regex") != bool(answer_regex):
            raise ConfigError('[data] answer_extract = "regex" goes with [data] answer_regex (a pattern whose first '
                              "group is the answer), and answer_regex only with it.")
        try:
            regex = re.compile(answer_regex) if answer_regex else None
        except re.error as e:
            raise ConfigError(f"[data] answer_regex = {answer_regex!r}: invalid pattern ({e}).") from None
        self.options = {**o, "answer_extract": how, "answer_regex": answer_regex, "filters": dict(filters or {})}
        label = f'[data] source = "hf" ({o["path"]})'
        split, test_split = o.get("split") or "train", o.get("test_split", "")
        splits = self._load(o["path"], o.get("name", ""))
        parts = {key: rows_of(splits, spec, key, o["path"]) for key, spec in
                 (("split", split), ("test_split", test_split)) if spec}
        field_names = {"prompt_field": o["prompt_field"], "answer_field": o.get("answer_field", "")}
        train = self._tasks(parts["split"], field_names, how, regex, split, label)
        seed = int(config_value(ctx, "training", "seed", 0))
        if test_split:
            test = self._tasks(parts["test_split"], field_names, how, regex, test_split, label)
            test_prompts = {t.prompt for t in test}
            train = [t for t in train if t.prompt not in test_prompts]  # never train on a test problem
            held_out = sorted(test, key=lambda t: stable_hash(f"eval/{t.id}"))  # fixed, seed-independent order
        else:
            train, held_out = hold_out(train, int(config_value(ctx, "eval", "num_problems", 64)))
        super().__init__(train, held_out, seed=seed, label=label)

    @staticmethod
    def _load(path: str, name: str) -> dict[str, list[Any]]:
        """{split: [Dataset, ...]}; several comma-separated configs in ``name`` are concatenated."""
        out: dict[str, list[Any]] = {}
        for config in [c.strip() for c in name.split(",")] if name else [""]:
            for split, rows in load_splits(path, config).items():
                out.setdefault(split, []).append(rows)
        return out

    def _tasks(self, parts: list[Any], fields: dict[str, str], how: str, regex: re.Pattern[str] | None,
               split: str, label: str) -> list[Task]:
        filters = self.options["filters"]
        tasks: list[Task] = []
        seen: set[str] = set()
        for rows in parts:
            columns = set(rows.column_names)
            needed = {c for f in [*fields.values(), *filters] for c in (_columns(f) if "{" in f else [f]) if c}
            missing = sorted(needed - columns)
            if missing:
                raise ConfigError(f"{label}: split {split!r} has no column {missing[0]!r}."
                                  + did_you_mean(missing[0], columns) + f" Columns: {', '.join(sorted(columns))}.")
            for row in rows:
                if filters and not _keep(row, filters):
                    continue
                prompt = render_field(row, fields["prompt_field"])
                if not isinstance(prompt, (str, list)):
                    prompt = str(prompt)
                answer = render_field(row, fields["answer_field"]) if fields["answer_field"] else ""
                reference = extract_reference(str(answer), how, regex) if fields["answer_field"] else ""
                if reference is None:  # e.g. no \boxed{} in the solution: not a checkable task
                    continue
                meta = {k: v for k, v in row.items() if isinstance(v, (str, int, float, bool)) and k not in fields.values()}
                key = prompt if isinstance(prompt, str) else repr(prompt)
                if key in seen:  # a repeated question is one task (its id is the question's hash)
                    continue
                seen.add(key)
                tasks.append(Task(prompt, reference, f"hf/{split}/{stable_hash(key):016x}", meta))
        return tasks
