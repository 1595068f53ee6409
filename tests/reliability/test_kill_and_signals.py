"""kill -9 at the worst moments, SIGTERM from a scheduler: a run always resumes to the same result.

One run directory goes through a chain of real processes, each killed with SIGKILL at a chosen
moment of a checkpoint or metrics write (``KILLER`` patches the write to kill the process right
there), each next one started with ``--resume latest``; the last one finishes. Its metrics rows
and final weights must equal those of an uninterrupted run, bit for bit (CPU is deterministic).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from reliability_helpers import cli_env
from retrain.testing.runs import read_metrics, write_toy_config
from safetensors.torch import load_file

from retrain.testing.runs import VOLATILE_METRICS as VOLATILE
STEPS = 6

# Runs the real CLI after arranging for SIGKILL at one moment (argv[1]) of a write.
KILLER = r'''
import io, json, os, signal, shutil, sys
from pathlib import Path

import torch

import retrain.loggers.jsonl as jsonl
import retrain.train.checkpoint as checkpoint

moment, args = sys.argv[1], sys.argv[2:]


def die():
    sys.stdout.flush(); sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


real_save, real_publish, real_rmtree, real_replace = torch.save, checkpoint.publish, shutil.rmtree, os.replace


def save(obj, f, *a, **k):
    p = Path(f) if isinstance(f, (str, os.PathLike)) else None
    if p is not None and moment == "backend-state-of-step-2" and p.parent.parent.name == ".tmp-step_2":
        die()  # weights written, trainer_state.pt not yet
    if p is not None and moment == "half-of-state.pt-of-step-3" and p.parent.name == ".tmp-step_3" and p.name == "state.pt":
        buf = io.BytesIO(); real_save(obj, buf, *a, **k)
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2]); die()
    return real_save(obj, f, *a, **k)


def publish(tmp, final):
    real_publish(tmp, final)
    if moment == "after-rename-of-step-3-before-pruning" and final.name == "step_3":
        die()


def rmtree(path, *a, **k):
    p = Path(path)
    if moment == "mid-delete-of-step-2" and p.name == ".del-step_2":
        (p / "state.pt").unlink(); die()
    return real_rmtree(path, *a, **k)


def replace(src, dst, *a, **k):
    if moment == "metrics-rewrite-before-replace" and Path(dst).name == "metrics.jsonl":
        die()  # the new file is written in full beside the old one
    return real_replace(src, dst, *a, **k)


class TornLogger(jsonl.JsonlLogger):
    def log(self, step, metrics):
        if moment == "half-of-metrics-row-5" and step == 5:
            self._f.write(json.dumps({"step": step, **metrics})[:25]); self._f.flush(); die()
        return super().log(step, metrics)


torch.save, checkpoint.publish, shutil.rmtree, os.replace = save, publish, rmtree, replace
jsonl.JsonlLogger = TornLogger

from retrain.cli.main import main

main(args)
'''

#: (moment, what the run directory must show right after the kill)
CHAIN = [
    "backend-state-of-step-2",
    "half-of-state.pt-of-step-3",
    "after-rename-of-step-3-before-pruning",
    "mid-delete-of-step-2",
    "half-of-metrics-row-5",
    "metrics-rewrite-before-replace",
]


def run_killed(moment: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", KILLER, moment, *args], env=cli_env(), capture_output=True,
                          text=True, timeout=300)


def stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted((checkpoint / "backend").rglob("*.safetensors")):
        out.update(load_file(str(f)))
    assert out, checkpoint
    return out


def config(tmp_path: Path, tiny_model: Path, name: str) -> Path:
    return write_toy_config(tmp_path / f"{name}.toml", tiny_model, tmp_path / "runs", run_name=name,
                            training={"max_steps": STEPS, "save_every": 1, "keep_checkpoints": 2})


def test_kill_9_at_six_moments_of_checkpoint_and_metrics_writes_then_resume_equals_one_run(tiny_model, tmp_path):
    reference = subprocess.run([sys.executable, "-m", "retrain.cli.main", str(config(tmp_path, tiny_model, "ref"))],
                               env=cli_env(), capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]
    ref_dir = tmp_path / "runs" / "ref"

    cfg = config(tmp_path, tiny_model, "killed")
    run_dir = tmp_path / "runs" / "killed"
    seen = {}
    for i, moment in enumerate(CHAIN):
        proc = run_killed(moment, str(cfg), *(["--resume", "latest"] if i else []))
        assert proc.returncode == -signal.SIGKILL, (moment, proc.returncode, proc.stderr[-3000:])
        ckpts = run_dir / "checkpoints"
        seen[moment] = sorted(p.name for p in ckpts.iterdir())
    # what each kill left behind (the next start must cope with all of it)
    assert ".tmp-step_2" in seen["backend-state-of-step-2"]
    assert ".tmp-step_3" in seen["half-of-state.pt-of-step-3"]
    assert {"step_1", "step_2", "step_3"} <= set(seen["after-rename-of-step-3-before-pruning"])
    assert ".del-step_2" in seen["mid-delete-of-step-2"]
    assert not (run_dir / "metrics.jsonl").read_text().endswith("\n")  # torn row 5 still there
    assert (run_dir / ".metrics.jsonl.tmp").is_file()  # the rewrite was killed before its replace

    final = subprocess.run([sys.executable, "-m", "retrain.cli.main", str(cfg), "--resume", "latest"],
                           env=cli_env(), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    assert stable(read_metrics(run_dir)) == stable(read_metrics(ref_dir))
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, STEPS + 1))
    a, b = weights(ref_dir / "checkpoints" / f"step_{STEPS}"), weights(run_dir / "checkpoints" / f"step_{STEPS}")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"step_{STEPS - 1}", f"step_{STEPS}"]
    assert not (run_dir / ".metrics.jsonl.tmp").exists()


def test_sigterm_finishes_the_step_saves_and_exits_0_then_resume_continues(tiny_model, tmp_path):
    cfg = write_toy_config(tmp_path / "long.toml", tiny_model, tmp_path / "runs",
                           training={"max_steps": 500, "save_every": 0})
    proc = subprocess.Popen([sys.executable, "-m", "retrain.cli.main", str(cfg)], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "runs" / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert "terminated (SIGTERM): finishing this step, then saving a checkpoint" in err
    done = read_metrics(tmp_path / "runs" / "run")[-1]["step"]
    assert f"interrupted after step {done}: checkpoint saved" in err
    assert (tmp_path / "runs" / "run" / "checkpoints" / f"step_{done}" / "state.pt").is_file()
    cfg.write_text(cfg.read_text().replace("max_steps = 500", f"max_steps = {done + 1}"))
    again = subprocess.run([sys.executable, "-m", "retrain.cli.main", str(cfg), "--resume", "latest"],
                           env=cli_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [r["step"] for r in read_metrics(tmp_path / "runs" / "run")] == list(range(1, done + 2))
