"""Security promises: checkpoints are data (a crafted one is refused and runs nothing); dotted paths
never shadow installed packages; run names stay inside log_dir; URLs lose their credentials;
auto_install never hands pip an option."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reliability_helpers import one_error_line, run_cli
from retrain.testing.runs import write_toy_config


class ShellCommand:
    """Unpickling this runs a shell command (what an attacker would put in a checkpoint)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def plant(path: Path, marker: Path) -> None:
    """Replace ``path`` with a torch file whose unpickling would ``touch marker``."""
    torch.save({"step": 1, "version": 1, "payload": ShellCommand(f"touch {marker}")}, path)


def test_the_planted_file_is_truly_malicious(tmp_path):
    """The attack is real: an unrestricted torch.load of the planted file runs the command."""
    marker, f = tmp_path / "pwned", tmp_path / "state.pt"
    plant(f, marker)
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(f)!r}, weights_only=False)"], check=True)
    assert marker.exists()


@pytest.mark.parametrize("target", ["state.pt", "backend/trainer_state.pt"])
@pytest.mark.parametrize("command", ["resume", "eval"])
def test_a_malicious_checkpoint_is_refused_with_one_line(trained_run, tmp_path, target, command):
    cfg, run_dir = trained_run
    ckpt = tmp_path / "step_1"
    shutil.copytree(run_dir / "checkpoints" / "step_1", ckpt)
    marker = tmp_path / "pwned"
    plant(ckpt / target, marker)
    args = [str(cfg), "--resume", str(ckpt)] if command == "resume" else ["eval", str(cfg), "--checkpoint", str(ckpt)]
    line = one_error_line(run_cli(*args))
    assert not marker.exists(), "the checkpoint ran a shell command"
    assert line.startswith(f"error: {ckpt / target}: refused to load: the file holds a reference to "), line
    assert "posix.system" in line or "os.system" in line, line


def test_a_malicious_sharded_checkpoint_is_refused_with_one_line(trained_run, tmp_path):
    """torch.distributed.checkpoint unpickles ``.metadata`` without restriction: retrain checks it first."""
    import pickle

    from retrain.train.checkpoint import load_data

    cfg, run_dir = trained_run
    ckpt = tmp_path / "step_1"
    shutil.copytree(run_dir / "checkpoints" / "step_1", ckpt)
    state = load_data(ckpt / "backend" / "trainer_state.pt")
    torch.save({"scheduler": state["scheduler"], "version": 1, "format": "dcp", "lora": False},
               ckpt / "backend" / "trainer_state.pt")
    (ckpt / "backend" / "dcp").mkdir()
    marker = tmp_path / "pwned"
    (ckpt / "backend" / "dcp" / ".metadata").write_bytes(pickle.dumps(ShellCommand(f"touch {marker}")))
    line = one_error_line(run_cli(str(cfg), "--resume", str(ckpt)))
    assert not marker.exists(), "the checkpoint ran a shell command"
    assert line.startswith(f"error: {ckpt / 'backend' / 'dcp' / '.metadata'}: refused to load: the file holds a "
                           "reference to posix.system, not plain data"), line


def test_real_sharded_checkpoint_metadata_passes_the_check(tmp_path):
    import torch.distributed.checkpoint as dcp
    from retrain.distributed.checkpoint import check_dcp_metadata

    state = {"model": {"w": torch.randn(3, 4), "b": torch.zeros(2, dtype=torch.bfloat16)},
             "optimizer": {"state": {"w": {"step": torch.tensor(1.0), "exp_avg": torch.randn(3, 4)}},
                           "param_groups": [{"lr": 0.1, "betas": (0.9, 0.99), "params": ["w"]}]}}
    with pytest.warns(UserWarning):  # "assuming the intent is to save in a single process"
        dcp.save(state, checkpoint_id=str(tmp_path / "dcp"), no_dist=True)
    check_dcp_metadata(tmp_path / "dcp")


def test_a_truncated_checkpoint_file_is_one_line(trained_run, tmp_path):
    cfg, run_dir = trained_run
    ckpt = tmp_path / "step_1"
    shutil.copytree(run_dir / "checkpoints" / "step_1", ckpt)
    data = (ckpt / "state.pt").read_bytes()
    (ckpt / "state.pt").write_bytes(data[: len(data) // 2])
    line = one_error_line(run_cli(str(cfg), "--resume", str(ckpt)))
    assert line.startswith(f"error: {ckpt / 'state.pt'}: unreadable checkpoint file"), line


def test_checkpoints_written_before_the_rule_still_load(trained_run, tmp_path):
    """Older checkpoints stored numpy's RNG state as a numpy array: still plain data, still loads."""
    import numpy as np
    from retrain.train.checkpoint import load_data, set_rng_state

    _, run_dir = trained_run
    state = load_data(run_dir / "checkpoints" / "step_1" / "state.pt")
    np.random.seed(3)
    state["rng"]["numpy"] = np.random.get_state()  # the old layout: ('MT19937', ndarray, ...)
    expected = np.random.rand(3)
    torch.save(state, tmp_path / "old.pt")
    set_rng_state(load_data(tmp_path / "old.pt")["rng"])
    assert np.array_equal(np.random.rand(3), expected)


# -- dotted paths -------------------------------------------------------------------------------

SCORE = "def score(response, reference):\n    return 1.0\n"


def test_a_stray_module_in_the_working_directory_does_not_shadow_a_dependency(tmp_path, monkeypatch):
    """A ``json.py`` in the working directory must not replace the standard library's json."""
    from retrain.components import load_dotted

    (tmp_path / "json.py").write_text("raise SystemExit('the stray json.py was imported')\n")
    (tmp_path / "my_scores.py").write_text("import json\nJSON_FILE = json.__file__\n" + SCORE)
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    fn = load_dotted("my_scores.score", "[reward] type")
    assert fn("x", "y") == 1.0
    assert sys.modules["my_scores"].JSON_FILE != str(tmp_path / "json.py")
    assert sys.path[: len(before)] == before, "a folder was put in front of sys.path"
    sys.modules.pop("my_scores", None)


def test_dotted_paths_resolve_in_the_config_folder_before_the_working_directory(tmp_path, monkeypatch):
    from retrain.components import load_dotted

    cfg_dir, cwd = tmp_path / "cfg", tmp_path / "cwd"
    cfg_dir.mkdir(), cwd.mkdir()
    (cfg_dir / "rel_scores.py").write_text("WHERE = 'config'\n" + SCORE)
    (cwd / "rel_scores.py").write_text("WHERE = 'cwd'\n" + SCORE)
    monkeypatch.chdir(cwd)
    load_dotted("rel_scores.score", "[reward] type", [cfg_dir])
    assert sys.modules["rel_scores"].WHERE == "config"
    sys.modules.pop("rel_scores", None)
    fn = load_dotted("./rel_scores.py:score", "[reward] type", [cfg_dir])
    assert fn.__module__ == "rel_scores" and sys.modules["rel_scores"].__file__ == str(cfg_dir / "rel_scores.py")
    sys.modules.pop("rel_scores", None)


def test_an_installed_module_wins_and_the_error_says_so(tmp_path, monkeypatch):
    from retrain.components import load_dotted
    from retrain.errors import PluginError

    (tmp_path / "random.py").write_text(SCORE)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginError) as e:
        load_dotted("random.score", "[reward] type", [tmp_path])
    assert "has no attribute 'score'" in str(e.value)
    assert f"The installed module 'random' ({Path(__import__('random').__file__)}) takes precedence" in str(e.value)
    with pytest.raises(PluginError, match=r"the file random.py has the name of an installed module 'random', which it "
                                          r"would shadow. Rename the file \(e.g. my_random.py\)."):
        load_dotted("random.py:score", "[reward] type", [tmp_path])
    assert sys.modules["random"].__file__ != str(tmp_path / "random.py")


def test_a_reward_named_by_file_path_runs_in_the_worker_processes(tmp_path, monkeypatch):
    """The file is imported under its stem and its folder appended to sys.path: the workers find it."""
    from retrain.rewards.custom import CustomReward

    (tmp_path / "file_scores.py").write_text("def score(response, reference):\n    return float(response == reference)\n")
    monkeypatch.chdir(tmp_path)
    reward = CustomReward(function="./file_scores.py:score", timeout=30, workers=1)
    try:
        result = reward.score(["4", "5"], ["4", "4"])
    finally:
        reward.close()
        sys.modules.pop("file_scores", None)
    assert (result.rewards, result.errors) == ([1.0, 0.0], 0)


# -- run names, URLs, pip ------------------------------------------------------------------------

BAD_RUN_NAMES = ["../../escaped", "/tmp/absolute-run", "a/b", "..", "a\\b"]


def run_name_error(source: str, name: str) -> str:
    shown = json.dumps(name)  # as the TOML value is written: "a\\b"
    return (f"{source}: [logging] run_name = {shown}: must be one folder name inside [logging] log_dir "
            '(no "/", "..", or absolute path); choose the parent folder with [logging] log_dir instead.')


@pytest.mark.parametrize("name", BAD_RUN_NAMES)
def test_a_run_name_that_is_a_path_is_refused_by_the_config_validator(tiny_model, tmp_path, name):
    from retrain.config import load_config
    from retrain.errors import ConfigError

    path = write_toy_config(tmp_path / "run.toml", tiny_model, tmp_path / "runs", run_name=name)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == run_name_error(str(path), name)
    with pytest.raises(ConfigError) as e:  # a --set override is the same key, checked the same way
        load_config(write_toy_config(tmp_path / "ok.toml", tiny_model, tmp_path / "runs"), {"logging.run_name": name})
    assert str(e.value) == run_name_error("--set logging.run_name", name)


def test_a_run_name_that_is_a_path_is_the_same_line_from_retrain_config_and_the_run(tiny_model, tmp_path):
    cfg = write_toy_config(tmp_path / "run.toml", tiny_model, tmp_path / "runs", run_name="../../escaped")
    expected = "error: " + run_name_error(str(cfg), "../../escaped")
    assert one_error_line(run_cli("config", str(cfg))) == expected
    assert one_error_line(run_cli(str(cfg))) == expected
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()
    ok = write_toy_config(tmp_path / "ok.toml", tiny_model, tmp_path / "runs", run_name="my-run.v2")
    assert 'run_name = "my-run.v2"' in run_cli("config", str(ok)).stdout  # a dotted name is one folder


def test_credentials_in_urls_never_reach_the_run_directory_or_the_console(tiny_model, tmp_path):
    url = "http://alice:s3cret-pass@127.0.0.1:9/v1?api_key=s3cret-key"
    cfg = write_toy_config(tmp_path / "run.toml", tiny_model, tmp_path / "runs",
                           inference={"engine": "openai", "url": url, "retries": 0})
    proc = run_cli("config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert 'url = "http://***@127.0.0.1:9/v1?api_key=***"' in proc.stdout
    proc = run_cli(str(cfg))  # port 9: nothing listens, so the engine fails and prints its URL
    assert proc.returncode != 0
    for text in (proc.stdout, proc.stderr, *(p.read_text() for p in tmp_path.rglob("*") if p.is_file()
                                             and p.suffix in (".toml", ".json", ".jsonl", ".txt") and p != cfg)):
        assert "s3cret" not in text, text[-2000:]
    assert "http://***@127.0.0.1:9" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("env_id", ["-rreqs.txt", "--index-url=http://evil.example/simple", "owner/-e.",
                                    "name@--pre", "pkg;rm -rf x", "../x"])
def test_an_environment_id_that_looks_like_a_pip_option_is_refused(env_id):
    pytest.importorskip("retrain_verifiers")
    from retrain.errors import ConfigError
    from retrain_verifiers.install import parse_env_id

    with pytest.raises(ConfigError, match=r"not a verifiers environment id; expected \[owner/\]name\[@version\]"):
        parse_env_id(env_id)
    assert parse_env_id("owner/my-env@0.3.1").install_command()[-1] == "my-env==0.3.1"
