"""Checkpoints and resume on CPU: N steps == k steps + resume + (N-k) steps, bit for bit;
metrics never duplicated; SIGINT saves and exits cleanly; wandb offline continues the same run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from retrain.config import load_config
from retrain.plugins import load_plugins
from retrain.testing import read_metrics, read_samples, write_toy_config
from retrain.train.runner import train
from safetensors.torch import load_file

from retrain.testing.runs import VOLATILE_METRICS as VOLATILE


def write_config(path: Path, model: Path, log_dir: Path, *, steps: int, lora_rank: int = 0,
                 name: str = "run", **sections: dict) -> Path:
    training = {"max_steps": steps, "max_tokens": 6, "lr": 1e-2, "save_every": 2, "keep_checkpoints": 5,
                **sections.pop("training", {})}
    return write_toy_config(path, model, log_dir, run_name=name, model={"lora_rank": lora_rank},
                            algorithm={"advantage_mode": "grpo"}, training=training, **sections)


def stable(rows_: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows_]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted((checkpoint / "backend").rglob("*.safetensors")):
        out.update(load_file(str(f)))
    assert out, f"no weights in {checkpoint}"
    return out


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_k_steps_plus_resume_equals_n_steps(tiny_model, tmp_path, lora_rank):
    full_cfg = write_config(tmp_path / "full.toml", tiny_model, tmp_path / "a", steps=4, lora_rank=lora_rank)
    full = train(load_config(full_cfg), load_plugins(), config_path=full_cfg)
    reference = read_metrics(full)
    assert [r["step"] for r in reference] == [1, 2, 3, 4]

    # k = 2 steps, then --resume latest with N = 4
    part_cfg = write_config(tmp_path / "part.toml", tiny_model, tmp_path / "b", steps=2, lora_rank=lora_rank)
    part = train(load_config(part_cfg), load_plugins(), config_path=part_cfg)
    assert [r["step"] for r in read_metrics(part)] == [1, 2]
    rest_cfg = write_config(tmp_path / "part.toml", tiny_model, tmp_path / "b", steps=4, lora_rank=lora_rank)
    resumed = train(load_config(rest_cfg), load_plugins(), config_path=rest_cfg, resume="latest")
    assert resumed == part
    assert stable(read_metrics(resumed)) == stable(reference)
    assert_same_weights(full / "checkpoints" / "step_4", resumed / "checkpoints" / "step_4")


def test_resume_from_an_earlier_checkpoint_rewrites_later_rows_once(tiny_model, tmp_path):
    cfg = write_config(tmp_path / "r.toml", tiny_model, tmp_path / "runs", steps=4)
    run_dir = train(load_config(cfg), load_plugins(), config_path=cfg)
    before = read_metrics(run_dir)
    final = weights(run_dir / "checkpoints" / "step_4")
    again = train(load_config(cfg), load_plugins(), config_path=cfg, resume=str(run_dir / "checkpoints" / "step_2"))
    assert again == run_dir
    after = read_metrics(run_dir)
    assert [r["step"] for r in after] == [1, 2, 3, 4]  # rows 3-4 replaced, not duplicated
    assert stable(after) == stable(before)
    assert all(torch.equal(final[k], v) for k, v in weights(run_dir / "checkpoints" / "step_4").items())
    samples = [r["step"] for r in read_samples(run_dir)]
    assert samples == sorted(samples) and samples.count(3) == samples.count(1)


def test_a_fresh_run_never_overwrites_a_previous_one(tiny_model, tmp_path):
    cfg = write_config(tmp_path / "r.toml", tiny_model, tmp_path / "runs", steps=1)
    first = train(load_config(cfg), load_plugins(), config_path=cfg)
    second = train(load_config(cfg), load_plugins(), config_path=cfg)
    assert first.name == "run" and second.name == "run-2"
    assert (first / "config.toml").is_file() and json.loads((first / "plugins.json").read_text())


RUNNER = """
import sys
from pathlib import Path
from retrain.config import load_config
from retrain.plugins import load_plugins
from retrain.train.runner import train
print(train(load_config(sys.argv[1]), load_plugins(), config_path=Path(sys.argv[1])), flush=True)
"""


def test_sigint_saves_a_checkpoint_and_exits_cleanly(tiny_model, tmp_path):
    cfg = write_config(tmp_path / "long.toml", tiny_model, tmp_path / "runs", steps=500,
                       training={"save_every": 0})  # only the interrupt saves
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "runs" / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "interrupted after step" in err
    run_dir = Path(out.strip().splitlines()[-1])
    done = read_metrics(run_dir)
    k = done[-1]["step"]
    assert [r["step"] for r in done] == list(range(1, k + 1)) and k < 500
    assert (run_dir / "checkpoints" / f"step_{k}" / "state.pt").is_file()
    # and it continues from there
    cont = write_config(tmp_path / "long.toml", tiny_model, tmp_path / "runs", steps=k + 1)
    train(load_config(cont), load_plugins(), config_path=cont, resume="latest")
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, k + 2))


def test_sigint_during_the_first_evaluation_says_nothing_was_saved(tiny_model, tmp_path):
    """Stopped before step 1 there is no checkpoint: the message must not claim one (a campaign restarts it)."""
    cfg = write_config(tmp_path / "slow_eval.toml", tiny_model, tmp_path / "runs", steps=5,
                       eval={"at_start": True, "num_problems": 4000, "max_tokens": 32})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    numerics = tmp_path / "runs" / "run" / "numerics.json"  # written once the run directory is prepared
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not numerics.is_file():
        time.sleep(0.1)
    time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "interrupted before step 1: no checkpoint (nothing was trained); run the same command again" in err
    assert "checkpoint saved" not in err
    assert not (tmp_path / "runs" / "run" / "checkpoints").exists()


def test_wandb_offline_and_resume_continue_the_same_run(tiny_model, tmp_path):
    wandb = {"wandb_project": "retrain-test", "wandb_mode": "offline"}
    cfg = write_config(tmp_path / "w.toml", tiny_model, tmp_path / "runs", steps=2, logging=wandb)
    run_dir = train(load_config(cfg), load_plugins(), config_path=cfg)
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    assert list((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    write_config(cfg, tiny_model, tmp_path / "runs", steps=3, logging=wandb)
    train(load_config(cfg), load_plugins(), config_path=cfg, resume="latest")
    assert (run_dir / "wandb_id.txt").read_text().strip() == run_id
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))) >= 1


def test_wandb_project_without_credentials_logs_offline_with_one_message(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    cfg = write_config(tmp_path / "w.toml", tiny_model, tmp_path / "runs", steps=1, logging={"wandb_project": "p"})
    run_dir = train(load_config(cfg), load_plugins(), config_path=cfg)
    err = capsys.readouterr().err
    assert "wandb project 'p' set but no wandb credentials" in err and "logging offline" in err
    assert [r["step"] for r in read_metrics(run_dir)] == [1]
    assert list((run_dir / "wandb").glob("offline-run-*"))


def test_memory_metrics_are_the_process_high_water_mark(tiny_model, tmp_path):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # GB, Linux KiB
    cfg = write_config(tmp_path / "m.toml", tiny_model, tmp_path / "runs", steps=2)
    rows = read_metrics(train(load_config(cfg), load_plugins(), config_path=cfg))
    peaks = [r["memory/peak_rss_gb"] for r in rows]
    hwm = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM:")) * 1024 / 1e9  # the kernel's own figure, read afterwards
    assert before <= peaks[0] <= peaks[1] <= hwm + 1e-9  # a high-water mark: never below what came before
    assert all("memory/gpu_peak_gib" not in r for r in rows)  # CPU run: no CUDA figure
