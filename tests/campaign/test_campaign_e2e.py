"""A real 2-condition x 2-seed campaign of the tiny model through the `retrain` CLI: sequential,
parallel, a run killed mid-way and the campaign interrupted, then resumed to the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from retrain.testing import read_metrics

pytest.importorskip("torch")
pytest.importorskip("peft")

REWARD = '''
import os, time
from retrain.protocols import RewardResult

class ParityReward:
    """Test reward: 1 when the first completion character has an even code point (about half)."""
    config_section = "reward"

    def __init__(self) -> None:
        pass

    def score(self, responses, references):
        time.sleep(float(os.environ.get("CAMPAIGN_TEST_SLEEP", "0")))  # makes steps slow enough to interrupt
        return RewardResult([1.0 if r[:1] and ord(r[0]) % 2 == 0 else 0.0 for r in responses])
'''

CONFIG = '''
[model]
model = "{model}"
lora_rank = 4
lora_alpha = 8.0
[training]
max_steps = {steps}
batch_size = 2
group_size = 4
max_tokens = 4
lr = 5e-3
save_every = 1
keep_checkpoints = 2
[data]
source = "retrain.testing.toy.CopyDigitEnv"
prompt_template = "{{problem}}"
[reward]
type = "parity_reward.ParityReward"
[eval]
at_start = false
at_end = false
[logging]
log_dir = "{out}"
loggers = {loggers}
wandb_project = "{wandb}"
wandb_mode = "offline"
[campaign]
seeds = [1, 2]
max_workers = {workers}
[[campaign.conditions]]
name = "grpo"
advantage_mode = "grpo"
[[campaign.conditions]]
name = "maxrl+gtpo"
advantage_mode = "maxrl"
transform_mode = "gtpo"
'''
NAMES = ["grpo-s1", "grpo-s2", "maxrl+gtpo-s1", "maxrl+gtpo-s2"]


def _setup(tmp_path: Path, model: Path, steps: int, workers: int, wandb: bool = False) -> Path:
    (tmp_path / "parity_reward.py").write_text(REWARD)
    path = tmp_path / "camp.toml"
    loggers = '["jsonl", "wandb"]' if wandb else '["jsonl"]'
    path.write_text(CONFIG.format(model=model, steps=steps, out=tmp_path / "out", loggers=loggers,
                                  wandb="campaign-test" if wandb else "", workers=workers))
    return path


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline", HF_HUB_OFFLINE="1", WANDB_SILENT="true",
                **extra)


def _retrain(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from retrain.cli.main import main; main()", *args]
    return subprocess.run(cmd, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=600)


def _steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir)]


def _manifest(cdir: Path) -> dict:
    return json.loads((cdir / "manifest.json").read_text())


def test_sequential_campaign_runs_summarises_squeezes_and_skips_done_runs(tmp_path, tiny_model):
    path = _setup(tmp_path, tiny_model, steps=2, workers=1)
    out = _retrain(str(path), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    cdir = tmp_path / "out" / "camp"
    m = _manifest(cdir)
    assert list(m["runs"]) == NAMES
    for name, run in m["runs"].items():
        run_dir = cdir / "runs" / name
        assert run["status"] == "done" and _steps(run_dir) == [1, 2]
        cfg = (run_dir / "config.toml").read_text()
        assert f"seed = {run['seed']}" in cfg and f'run_name = "{name}"' in cfg
        assert "seeds = []" in cfg  # the child is a plain run
        assert (run_dir / "wandb_id.txt").read_text().strip() == run["wandb"]["id"]
        assert run["config"]["algorithm"]["advantage_mode"] == ("grpo" if name.startswith("grpo") else "maxrl")
    # auto squeeze of the first finished run: a trained (non-zero) adapter of rank 4
    report = json.loads((cdir / "squeeze" / "report.json").read_text())
    assert report["rank"] == 4 and report["zero_layers"] < len(report["layers"])
    assert 1 <= report["recommended_rank"] <= 4 and report["mean_energy_at_recommended"] >= 0.95
    assert "grpo-s1" in report["adapter"]
    assert "| grpo | 2 |" in (cdir / "summary.md").read_text()
    assert (cdir / "plots" / "reward.png").stat().st_size > 5000
    # again: nothing left to do
    again = _retrain(str(path), cwd=tmp_path)
    assert again.returncode == 0 and "4 runs (4 already done)" in again.stdout
    assert all(len(r["attempts"]) == 1 for r in _manifest(cdir)["runs"].values())
    status = _retrain("campaign", "status", str(cdir), cwd=tmp_path)
    assert status.stdout.splitlines()[1].split() == ["grpo", "1", "2/2", "done"]
    # squeeze CLI on a run directory compresses its newest adapter
    sq = _retrain("squeeze", str(cdir / "runs" / "grpo-s2"), "--rank", "2", "--out", str(tmp_path / "r2"), "--json",
                  cwd=tmp_path)
    assert sq.returncode == 0, sq.stderr
    assert json.loads(sq.stdout)["compressed"]["rank"] == 2
    assert json.loads((tmp_path / "r2" / "adapter_config.json").read_text())["lora_alpha"] == 4.0


def _wait(pred, timeout: float = 300.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _has_checkpoint(run_dir: Path) -> bool:
    ck = run_dir / "checkpoints"
    return ck.is_dir() and any((p / "state.pt").is_file() for p in ck.iterdir())


def test_parallel_campaign_killed_run_and_interrupt_then_resume(tmp_path, tiny_model):
    path = _setup(tmp_path, tiny_model, steps=8, workers=2, wandb=True)
    cdir = tmp_path / "out" / "camp"
    cmd = [sys.executable, "-c", "from retrain.cli.main import main; main()", "campaign", "run", str(path)]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(CAMPAIGN_TEST_SLEEP="0.4"), stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        first = cdir / "runs" / "grpo-s1"
        _wait(lambda: _has_checkpoint(first), what="a checkpoint of grpo-s1")
        pid = _manifest(cdir)["runs"]["grpo-s1"]["pid"]
        os.kill(pid, signal.SIGKILL)  # the run dies mid-way (after >= 1 checkpoint)
        _wait(lambda: _manifest(cdir)["runs"]["grpo-s1"]["status"] == "failed", what="grpo-s1 marked failed")
        # the freed worker took the next run; once it is past its first checkpoint, interrupt the campaign
        _wait(lambda: _has_checkpoint(cdir / "runs" / "maxrl+gtpo-s1"), what="a checkpoint of maxrl+gtpo-s1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    m = _manifest(cdir)
    assert m["runs"]["grpo-s1"]["status"] == "failed" and m["runs"]["grpo-s1"]["returncode"] == -signal.SIGKILL
    interrupted = [n for n, r in m["runs"].items() if r["status"] == "interrupted"]
    assert "maxrl+gtpo-s1" in interrupted, m["runs"]
    with_checkpoint = [n for n in interrupted if _has_checkpoint(cdir / "runs" / n)]
    assert "maxrl+gtpo-s1" in with_checkpoint
    killed_steps = _steps(first)
    assert 1 <= len(killed_steps) < 8
    wandb_id = (first / "wandb_id.txt").read_text().strip()
    status = _retrain("campaign", "status", str(cdir), cwd=tmp_path).stdout
    assert "interrupted" in status and "failed" in status

    out = _retrain("campaign", "run", str(path), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    m = _manifest(cdir)
    for name in NAMES:
        assert m["runs"][name]["status"] == "done"
        assert _steps(cdir / "runs" / name) == list(range(1, 9)), name  # every step exactly once
    runs = m["runs"]["grpo-s1"]
    assert [a["resume"] for a in runs["attempts"]] == [False, True]
    assert runs["command"][-2:] == ["--resume", "latest"]
    # the resumed run continued the same wandb run
    assert runs["wandb"]["id"] == wandb_id == (first / "wandb_id.txt").read_text().strip()
    offline = sorted(p.name for p in (first / "wandb").iterdir() if p.name.startswith("offline-run-"))
    assert len(offline) == 2 and all(p.endswith(wandb_id) for p in offline)
    for name in with_checkpoint:  # gracefully stopped runs resumed from their checkpoint, not from scratch
        assert m["runs"][name]["attempts"][-1]["resume"] is True
