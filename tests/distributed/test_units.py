"""Pieces of the distributed path that need no process group: sampler, devices, batch split, launch command."""

from __future__ import annotations

import pytest
import torch

from retrain.distributed.launch import (LAUNCH_DIR_ENV, TORCHRUN_LOG, launch_outcome, needs_launch,
                                        parse_devices, processes, record_rank_error, torchrun_command)
from retrain.distributed.sampling import keyed_sample, keyed_uniform
from retrain.distributed.step import StepShards
from retrain.distributed.world import World
from retrain.errors import ConfigError


def test_keyed_sampling_gives_each_row_the_same_token_in_any_batch_split():
    torch.manual_seed(0)
    logits = torch.randn(8, 50)  # [N, V]
    rows = torch.arange(8)
    whole = keyed_sample(logits, 1.0, 0.9, 123, rows, 5)
    halves = [keyed_sample(logits[s], 1.0, 0.9, 123, rows[s], 5) for s in (slice(0, 4), slice(4, 8))]
    for i in range(3):
        assert torch.equal(whole[i], torch.cat([halves[0][i], halves[1][i]]))
    assert not torch.equal(keyed_sample(logits, 1.0, 0.9, 124, rows, 5)[0], whole[0])  # the seed matters


def test_keyed_sampling_draws_from_the_distribution():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = p.log().expand(20000, 4)  # [N, V]: one draw per row
    tok, lp, ent = keyed_sample(logits, 1.0, 1.0, 7, torch.arange(20000), 0)
    freq = torch.bincount(tok, minlength=4).float() / 20000
    assert torch.allclose(freq, p, atol=0.015)
    assert torch.allclose(lp, p.log()[tok], atol=1e-6)
    assert ent[0].item() == pytest.approx(float(-(p * p.log()).sum()), rel=1e-5)
    nucleus, _, _ = keyed_sample(logits, 1.0, 0.4, 7, torch.arange(20000), 0)  # top_p 0.4 keeps the top token only
    assert set(nucleus.tolist()) == {0}
    u = keyed_uniform(1, torch.arange(4), 0, 1000)
    assert 0 < float(u.min()) and float(u.max()) < 1 and u.unique().numel() == 4000


def test_devices_strings():
    assert parse_devices("gpu:0,1") == ("gpu", ["0", "1"])
    assert processes("gpu:0,1,2") == 3 and processes("cpu:2") == 2
    assert processes("gpu:0") == 0 and processes("auto") == 0 and processes("cpu") == 0
    with pytest.raises(ConfigError, match=r'devices = "gpu:0,0": expected distinct GPU numbers'):
        parse_devices("gpu:0,0")
    with pytest.raises(ConfigError, match=r'devices = "cpu:x": expected a process count such as "cpu:2"'):
        parse_devices("cpu:x")


def test_launch_command_and_no_relaunch_inside_torchrun(monkeypatch):
    for k in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    argv, env = torchrun_command("gpu:2,3", ["run.toml", "--seed", "1"])
    assert argv[1:] == ["-m", "retrain.distributed.torchrun", "--standalone", "--nproc-per-node=2", "-m",
                        "retrain.cli.main", "run.toml", "--seed", "1"]
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert needs_launch("cpu:2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not needs_launch("cpu:2")


def test_whole_groups_per_rank_and_a_clear_error_otherwise():
    shards = StepShards(World(rank=1, size=2, local_rank=1, device="cpu", backend="gloo"))
    assert shards.share(list("abcd")) == ["c", "d"] and shards.row_offset(4) == 2
    with pytest.raises(ConfigError) as e:
        shards.check_batch(5, "run.toml [training] batch_size")
    assert str(e.value) == ("run.toml [training] batch_size = 5 is not divisible by the 2 processes of this run: "
                            "each rank samples whole groups, so use a multiple of 2 (e.g. 6) or another number "
                            "of devices.")


def test_cli_refuses_a_batch_that_does_not_split_before_launching(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "run.toml"
    config.write_text('[backend]\ndevices = "cpu:2"\n[training]\nbatch_size = 5\n')
    proc = subprocess.run([sys.executable, "-m", "retrain.cli.main", str(config)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {config} [training] batch_size = 5 is not divisible by the 2 processes "
                                   "of this run: each rank samples whole groups, so use a multiple of 2 (e.g. 6) "
                                   "or another number of devices.")


def test_the_launcher_prints_the_ranks_user_errors_once_and_exits_2(tmp_path, monkeypatch, capsys):
    """Each rank leaves its error line in the launcher's folder instead of printing it; the launcher
    prints each distinct line once (rank order) and exits 2, whatever torchrun's own code; with no
    user error it shows torchrun's messages and keeps its code."""
    monkeypatch.setenv(LAUNCH_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    for rank, line in [(2, "error: only rank 2"), (0, "error: disk full"), (1, "error: disk full")]:
        monkeypatch.setenv("RANK", str(rank))
        assert record_rank_error(line)
    (tmp_path / TORCHRUN_LOG).write_text("ChildFailedError: ... exitcode 2\n")
    assert launch_outcome(tmp_path, 1) == 2
    assert capsys.readouterr().err == "error: disk full\nerror: only rank 2\n"
    for f in tmp_path.glob("rank*.error"):
        f.unlink()
    assert launch_outcome(tmp_path, 1) == 1  # a crash: torchrun's report is the message
    assert capsys.readouterr().err == "ChildFailedError: ... exitcode 2\n"
    monkeypatch.delenv(LAUNCH_DIR_ENV)
    assert not record_rank_error("error: x")  # torchrun started by hand: the rank prints its own line
