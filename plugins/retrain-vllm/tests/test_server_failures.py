"""A managed vLLM server that dies mid-run, and Ctrl-C during a run: clear errors, checkpoints
intact, no server left behind. Each test runs the real CLI in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from retrain.testing import read_metrics, write_toy_config

# An environment that, at its Nth sample() call, does something to the run: kill the vLLM server
# (its pid read from the server log) or press Ctrl-C (SIGINT to the training process).
SABOTAGE_ENV = '''
import os, re, signal
from retrain.testing.toy import CopyDigitEnv

class SabotageEnv(CopyDigitEnv):
    config_section = "data"

    def __init__(self, repeat: int = 8, ctx=None):
        super().__init__(repeat=repeat, ctx=ctx)
        self.run_dir, self.calls = ctx.run_dir, 0

    def sample(self, batch_size):
        self.calls += 1
        if self.calls == 3:
            if os.environ["SABOTAGE"] == "kill-server":
                log = (self.run_dir / "vllm" / "server.log").read_text()
                os.kill(int(re.search(r"APIServer pid=(\\d+)", log).group(1)), signal.SIGKILL)
            else:
                os.kill(os.getpid(), signal.SIGINT)
        return super().sample(batch_size)
'''


def run_cli(tmp_path: Path, model: Path, sabotage: str) -> tuple[subprocess.CompletedProcess, Path]:
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "sabotage_env.py").write_text(SABOTAGE_ENV)
    write_toy_config(exp / "run.toml", model, tmp_path / "runs", model={"lora_rank": 4},
                     training={"max_steps": 3, "group_size": 2, "max_tokens": 6, "save_every": 1},
                     data={"source": "sabotage_env.SabotageEnv"}, reward={"workers": 1},
                     inference={"engine": "vllm", "retries": 1}, vllm={"mode": "server", "max_model_len": 128})
    proc = subprocess.run([sys.executable, "-c", "from retrain.cli.main import main; main()", "run.toml"],
                          cwd=exp, capture_output=True, text=True, timeout=500,
                          env=dict(os.environ, SABOTAGE=sabotage))
    return proc, tmp_path / "runs" / "run"


def server_pid(run_dir: Path) -> int:
    return int(re.search(r"APIServer pid=(\d+)", (run_dir / "vllm" / "server.log").read_text()).group(1))


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir)]


def test_server_killed_mid_run_gives_a_clear_error_and_keeps_checkpoints(vllm_model, tmp_path):
    proc, run_dir = run_cli(tmp_path, vllm_model, "kill-server")
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert re.match(r"error: the vLLM server \(pid \d+\) stopped with exit code -9: .*"
                    r"Checkpoints already written are intact; resume with --resume latest\.$", last), last
    assert steps(run_dir) == [1, 2]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.is_dir())[-1] == "step_2"


def test_ctrl_c_stops_after_a_checkpoint_and_shuts_the_server_down(vllm_model, tmp_path):
    proc, run_dir = run_cli(tmp_path, vllm_model, "ctrl-c")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "continue with --resume latest" in proc.stderr
    assert gone(server_pid(run_dir))
    assert steps(run_dir)[-1] in (2, 3) and (run_dir / "checkpoints").is_dir()
