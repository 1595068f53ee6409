"""Documented errors: unknown id, bad args, eval-only environments; auto_install installs for real."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from retrain.errors import ConfigError
from vf_helpers import error_line, retrain, write_run


def test_missing_environment_names_the_install_command(vf_envs):
    from retrain_verifiers.environment import VerifiersEnvironment

    with pytest.raises(ConfigError) as e:
        VerifiersEnvironment(id="owner/no-such-env@1.2")
    assert str(e.value) == (
        'config [environment] id = "owner/no-such-env@1.2": verifiers environment is not installed '
        "(no module 'no_such_env'). Install it: pip install no-such-env==1.2 "
        "(or set [environment] auto_install = true).")


def test_unknown_args_are_refused_with_the_field(vf_envs):
    from retrain_verifiers.environment import VerifiersEnvironment

    with pytest.raises(ConfigError) as e:
        VerifiersEnvironment(id="retrain-vf-letters", args={"num_taskz": 3})
    assert str(e.value) == ('config [environment] id = "retrain-vf-letters": the environment rejected [environment] '
                            "args (num_taskz: Extra inputs are not permitted). Accepted args are the fields of its "
                            "taskset config.")


def test_bad_id_syntax():
    from retrain_verifiers.install import parse_env_id

    with pytest.raises(ConfigError, match=r'id = "a b": not a verifiers environment id; expected \[owner/\]name'):
        parse_env_id("a b")
    ref = parse_env_id("owner/my-env@0.3.1")
    assert (ref.name, ref.version, ref.module, ref.requirement) == ("my-env", "0.3.1", "my_env", "my-env==0.3.1")


def test_auto_install_installs_then_eval_only_env_fails_fast(vf_envs, vf_model, tmp_path):
    """auto_install = true pip-installs the package (from a local wheel folder: pip's own config
    decides the index, here PIP_TARGET keeps it in the test's folder); the environment has only
    a "test" split, so training is refused."""
    assert importlib.util.find_spec("retrain_vf_evalonly") is None
    config = write_run(tmp_path, vf_model, "retrain-vf-evalonly", extra="auto_install = true")
    proc = retrain(config, vf_envs.site, env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(vf_envs.wheels),
                                             "PIP_NO_DEPS": "1", "PIP_TARGET": str(vf_envs.site)})
    assert "retrain-verifiers: installing environment 'retrain-vf-evalonly'" in proc.stderr
    assert proc.returncode == 2
    assert error_line(proc) == (
        'error: run.toml [environment] id = "retrain-vf-evalonly": this verifiers environment is eval-only (it '
        'yields no training tasks; its split field refuses "train"). Use it to evaluate a trained model (e.g. '
        "`vf-eval`), or train on an environment with training data (a taskset with a \"train\" split or more tasks "
        "than [eval] num_problems).")
    importlib.invalidate_caches()
    assert importlib.util.find_spec("retrain_vf_evalonly") is not None  # installed for real, into site


def test_without_auto_install_nothing_is_installed(vf_envs, tmp_path):
    from retrain_verifiers.environment import VerifiersEnvironment

    before = sorted(p.name for p in Path(os.__file__).parent.glob("site-packages/retrain_vf_*"))
    with pytest.raises(ConfigError, match="not installed"):
        VerifiersEnvironment(id="retrain-vf-never")
    assert sorted(p.name for p in Path(os.__file__).parent.glob("site-packages/retrain_vf_*")) == before


def test_data_prompt_keys_are_refused_by_retrain_config_and_the_run_alike(tmp_path):
    """The environment renders its own prompts: [data] system_prompt would be ignored, so it is refused
    before anything loads (no environment package, no model needed), with the same line from both."""
    config = write_run(tmp_path, tmp_path / "no-model", "retrain-vf-letters")
    config.write_text(config.read_text() + '[data]\nsystem_prompt = "Be brief."\n')
    expected = ('error: run.toml: [data] system_prompt = "Be brief." is not applied with [environment] provider = '
                "\"verifiers\": the environment supplies its own prompts (its tasks' messages, rendered with the "
                "tokenizer's chat template); remove it, or train from [data] and [reward] instead.")
    for args in (["config", "run.toml"], ["run.toml"]):
        proc = subprocess.run([sys.executable, "-m", "retrain.cli.main", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert (proc.returncode, proc.stderr) == (2, expected + "\n"), proc.stderr[-3000:]
