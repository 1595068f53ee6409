"""Toy runs for tests: a config that trains a tiny model on the toy task, and its output readers.

    path = write_toy_config(tmp_path / "run.toml", tiny_model, tmp_path / "runs",
                            training={"max_steps": 3, "save_every": 1})
    run_dir = train(load_config(path), load_plugins(), config_path=path)
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3]

The toy run is ``retrain.testing.toy.CopyDigitEnv`` scored by ``FirstCharReward``, full fine-tuning
(``lora_rank = 0``), jsonl metrics only, no evaluation and no checkpoints unless a section says so.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

#: Sections of the toy run before a test's changes (one step, 2 prompts x 4 samples x 4 tokens).
TOY_RUN: dict[str, dict[str, Any]] = {
    "model": {"lora_rank": 0},
    "training": {"max_steps": 1, "batch_size": 2, "group_size": 4, "max_tokens": 4, "save_every": 0},
    "data": {"source": "retrain.testing.toy.CopyDigitEnv", "prompt_template": "{problem}"},
    "reward": {"type": "retrain.testing.toy.FirstCharReward"},
    "logging": {"loggers": ["jsonl"]},
    "eval": {"at_start": False, "at_end": False},
}


def toy_config(model: str | Path, log_dir: str | Path, /, *, run_name: str = "run",
               **sections: dict[str, Any]) -> dict[str, Any]:
    """The toy run's config as a dict; each keyword is a section whose keys replace the toy run's
    keys one by one (``training={"max_steps": 3}`` keeps the other [training] keys; ``model=`` is
    the [model] section, the first argument its ``model`` path)."""
    data = copy.deepcopy(TOY_RUN)
    data["model"]["model"] = str(model)
    data["logging"].update(log_dir=str(log_dir), run_name=run_name)
    for section, body in sections.items():
        data.setdefault(section, {}).update(body)
    return data


def write_toy_config(path: str | Path, model: str | Path, log_dir: str | Path | None = None, /, *,
                     run_name: str = "run", **sections: dict[str, Any]) -> Path:
    """Write :func:`toy_config` as TOML to ``path`` (``log_dir`` defaults to ``runs/`` beside it)."""
    from retrain.config import dump_toml

    path = Path(path)
    log_dir = path.parent / "runs" if log_dir is None else log_dir
    path.write_text(dump_toml(toy_config(model, log_dir, run_name=run_name, **sections)))
    return path


#: metric prefixes that legitimately differ between a run and its resumed (or repeated) twin
VOLATILE_METRICS = ("time/", "throughput/", "memory/")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a jsonl file (blank lines skipped)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``RUN_DIR/metrics.jsonl``, one per logged step."""
    return read_jsonl(Path(run_dir) / "metrics.jsonl")


def read_samples(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``RUN_DIR/samples.jsonl``, one per sampled completion."""
    return read_jsonl(Path(run_dir) / "samples.jsonl")


#: Runs ``train(config)`` in a child process and prints the run directory (:func:`signal_after_rows`).
TRAIN_IN_A_PROCESS = """
import sys
from pathlib import Path
from retrain.config import load_config
from retrain.plugins import load_plugins
from retrain.train.runner import train
print(train(load_config(sys.argv[1]), load_plugins(), config_path=Path(sys.argv[1])), flush=True)
"""


def signal_after_rows(config: str | Path, metrics: str | Path, rows: int, signum: int = 2,
                      timeout: float = 120.0) -> tuple[int, str, str]:
    """Train ``config`` in a child process, send it ``signum`` (SIGINT) once ``metrics`` has ``rows`` rows;
    returns (exit code, stdout, stderr). Fails when the run ends before that."""
    import os
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", TRAIN_IN_A_PROCESS, str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics, deadline = Path(metrics), time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= rows:
            break
        time.sleep(0.1)
    if proc.poll() is not None:
        raise AssertionError(f"the run ended before {rows} metrics rows: {proc.communicate()[1][-2000:]}")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
