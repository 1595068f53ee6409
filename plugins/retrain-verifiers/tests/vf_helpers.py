"""Writing a RUN.toml for a verifiers environment and running `retrain RUN.toml` for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from retrain.testing import read_metrics, read_samples
from retrain.testing.packages import path_env

RUN = '''
[model]
model = "{model}"
lora_rank = 4
[training]
max_steps = {steps}
batch_size = {batch}
group_size = 4
max_tokens = {max_tokens}
temperature = 1.0
lr = {lr}
seed = 3
[algorithm]
advantage_mode = "grpo"
[environment]
provider = "verifiers"
id = "{env_id}"
{extra}
[eval]
at_start = false
at_end = {at_end}
num_problems = 2
[logging]
log_dir = "{out}"
run_name = "run"
loggers = ["jsonl"]
'''


def write_run(tmp: Path, model: Path, env_id: str, *, steps: int = 2, batch: int = 2, max_tokens: int = 6,
              lr: float = 5e-3, extra: str = "", at_end: bool = False, name: str = "run.toml") -> Path:
    path = tmp / name
    path.write_text(RUN.format(model=model, env_id=env_id, steps=steps, batch=batch, max_tokens=max_tokens, lr=lr,
                               extra=extra, at_end=str(at_end).lower(), out=tmp / "out"))
    return path


def retrain(config: Path, site: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`retrain RUN.toml` in a subprocess (cwd = the config's folder) that sees the fixture
    environments installed in ``site``."""
    full_env = {**path_env(site), **(env or {})}
    return subprocess.run([sys.executable, "-c", "from retrain.cli.main import main; main()", config.name],
                          cwd=config.parent, capture_output=True, text=True, env=full_env, timeout=timeout)


def metrics(tmp: Path) -> list[dict]:
    return read_metrics(tmp / "out" / "run")


def samples(tmp: Path) -> list[dict]:
    return read_samples(tmp / "out" / "run")


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert lines, proc.stderr[-3000:]
    return lines[-1]
