"""Helpers of the tinker tests: start and stop the stand-in (`retrain tinker serve`) as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

KEY = "tml-retrain-tests"


def start_standin(model, state_dir, *extra: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start `retrain tinker serve` on a free port; returns (process, base URL from its first line)."""
    cmd = [sys.executable, "-m", "retrain.cli.main", "tinker", "serve", "--model", str(model), "--port", "0",
           "--state-dir", str(state_dir), "--threads", "1", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    line = proc.stdout.readline()  # "retrain tinker stand-in: serving M at http://127.0.0.1:P (...)"
    if " at http://" not in line:
        proc.kill()
        raise RuntimeError(f"the stand-in did not start: {line}{proc.stdout.read()}")
    return proc, line.split(" at ", 1)[1].split(" ", 1)[0]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


FIRST_HALF = textwrap.dedent('''
    from retrain.protocols import RewardResult

    class FirstHalf:
        """1 when the completion starts with a character before "m" (about half of random samples)."""

        config_section = "reward"

        def score(self, responses, references):
            return RewardResult([1.0 if r[:1] and r[:1] < "m" else 0.0 for r in responses])
''')


def run_config(path: Path, *, model, url: str, log_dir, name: str, steps: int) -> Path:
    """The toy run (retrain.testing) on the tinker backend, with a reward that varies within groups
    (the toy reward is ~always 0 for a random model, which would give zero advantages)."""
    from retrain.testing import write_toy_config

    (path.parent / "first_half.py").write_text(FIRST_HALF)
    return write_toy_config(
        path, model, log_dir, run_name=name,
        backend={"backend": "tinker"}, inference={"engine": "tinker"}, algorithm={"advantage_mode": "grpo"},
        training={"max_steps": steps, "max_tokens": 6, "lr": 1e-2, "temperature": 1.0, "save_every": 1,
                  "keep_checkpoints": 5},
        reward={"type": "first_half.FirstHalf"},
        tinker={"base_model": str(model), "lora_rank": 4, "base_url": url})


def run_retrain(*args: str, env: dict | None = None, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real ``retrain`` CLI of this interpreter."""
    return subprocess.run([sys.executable, "-m", "retrain.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "TINKER_TELEMETRY": "0", **(env or {})})
