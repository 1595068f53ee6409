"""Out of GPU memory through the real CLI: a run's last line and exit status, and a campaign that gives
such a run another start with fewer runs beside it instead of failing it. The error is torch's own
``OutOfMemoryError``, raised in a real child process by its reward (a CPU cannot run out of CUDA memory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from retrain.errors import EXIT_OUT_OF_MEMORY
from retrain.testing import read_metrics
from test_campaign_e2e import CONFIG, _retrain

pytest.importorskip("torch")
pytest.importorskip("peft")

REWARD = '''
import os, time
import torch
from retrain.protocols import RewardResult

class OomOnce:
    """Raises torch.OutOfMemoryError in the first score call of the runs named in OOM_RUN (comma-separated;
    once each: a marker file per run), as a GPU shared by too many runs does; every other call scores parity
    after OOM_SLEEP seconds."""

    def score(self, responses, references):
        run = os.environ.get("RETRAIN_CAMPAIGN_RUN", "")
        marker = os.environ["OOM_MARKER"] + "-" + run
        if run in os.environ["OOM_RUN"].split(",") and not os.path.exists(marker):
            open(marker, "w").close()
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
                                         "capacity of 79.18 GiB of which 20.25 MiB is free.")
        time.sleep(float(os.environ.get("OOM_SLEEP", "0")))
        return RewardResult([1.0 if r[:1] and ord(r[0]) % 2 == 0 else 0.0 for r in responses])
'''

LINE = ("error: out of accelerator memory (CUDA out of memory. Tried to allocate 2.00 GiB). Lower [backend] "
        "micro_batch_size, [eval] batch_size or [training] batch_size x group_size x max_tokens; on a shared GPU, "
        "run fewer jobs at once ([campaign] max_workers).")


def _setup(tmp_path: Path, model: Path) -> Path:
    (tmp_path / "oom_reward.py").write_text(REWARD)
    path = tmp_path / "camp.toml"
    text = CONFIG.format(model=model, steps=3, out=tmp_path / "out", loggers='["jsonl"]', wandb="", workers=2)
    path.write_text(text.replace('type = "parity_reward.ParityReward"', 'type = "oom_reward.OomOnce"'))
    return path


def test_a_run_out_of_gpu_memory_ends_with_one_line_and_its_own_exit_status(tmp_path, tiny_model):
    path = _setup(tmp_path, tiny_model)
    out = _retrain(str(path), "--set", "campaign.seeds=[]", "--set", "campaign.conditions=[]", cwd=tmp_path,
                   OOM_MARKER=str(tmp_path / "oom"), OOM_RUN="")  # a single run: RETRAIN_CAMPAIGN_RUN is unset
    assert out.returncode == EXIT_OUT_OF_MEMORY == 3, out.stderr[-3000:]
    assert out.stderr.rstrip("\n").splitlines()[-1] == LINE
    assert "torch.OutOfMemoryError" in out.stderr  # the traceback comes first: where it ran out


def test_a_campaign_restarts_a_run_that_ran_out_beside_others_with_fewer_at_once(tmp_path, tiny_model):
    path = _setup(tmp_path, tiny_model)
    # seed 1 of both conditions at once; grpo-s1 runs out of memory in its first step while maxrl+gtpo-s1,
    # 2 s a step, still runs: it goes back to the queue and the campaign runs one at a time from then on
    out = _retrain(str(path), "--set", "campaign.seeds=[1]", cwd=tmp_path, OOM_MARKER=str(tmp_path / "oom"),
                   OOM_RUN="grpo-s1", OOM_SLEEP="2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert ("grpo-s1 ran out of GPU memory beside 1 other run(s): it starts again later, with at most 1 run(s) "
            "at once") in out.stdout
    cdir = tmp_path / "out" / "camp"
    runs = json.loads((cdir / "manifest.json").read_text())["runs"]
    assert {n: r["status"] for n, r in runs.items()} == {"grpo-s1": "done", "maxrl+gtpo-s1": "done"}
    assert [a["returncode"] for a in runs["grpo-s1"]["attempts"]] == [EXIT_OUT_OF_MEMORY, 0]
    assert [a["returncode"] for a in runs["maxrl+gtpo-s1"]["attempts"]] == [0]
    # the second attempt started after its neighbour ended (one at a time) and trained all 3 steps
    assert runs["grpo-s1"]["attempts"][1]["start"] >= runs["maxrl+gtpo-s1"]["attempts"][0]["end"]
    assert [r["step"] for r in read_metrics(cdir / "runs" / "grpo-s1")] == [1, 2, 3]
    assert LINE in (cdir / "logs" / "grpo-s1.log").read_text()


def test_runs_that_run_out_together_all_start_again(tmp_path, tiny_model):
    # both runs of seed 1 run out of memory in their first step, as every run does when the GPU fills up:
    # the last to end has nobody left beside it, but it shared the GPU during its attempt, so it is not failed
    # (2026-12-05, 5 ablation runs on one H100: the fifth was). The cap of runs at once drops once, to 1.
    path = _setup(tmp_path, tiny_model)
    out = _retrain(str(path), "--set", "campaign.seeds=[1]", cwd=tmp_path, OOM_MARKER=str(tmp_path / "oom"),
                   OOM_RUN="grpo-s1,maxrl+gtpo-s1")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    said = [line for line in out.stdout.splitlines() if "ran out of GPU memory" in line]
    assert sorted(said) == [f"{name} ran out of GPU memory beside 1 other run(s): it starts again later, with at most "
                            "1 run(s) at once" for name in ("grpo-s1", "maxrl+gtpo-s1")], out.stdout[-3000:]
    runs = json.loads((tmp_path / "out" / "camp" / "manifest.json").read_text())["runs"]
    assert {n: [a["returncode"] for a in r["attempts"]] for n, r in runs.items()} == {
        "grpo-s1": [EXIT_OUT_OF_MEMORY, 0], "maxrl+gtpo-s1": [EXIT_OUT_OF_MEMORY, 0]}
    assert {n: r["status"] for n, r in runs.items()} == {"grpo-s1": "done", "maxrl+gtpo-s1": "done"}
