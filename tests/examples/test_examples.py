"""examples/: every config validates with `retrain config`; the CPU-sized ones run a real step
(on the tiny test model instead of SmolLM2, so the test stays fast). Plugin and environment
packages of the examples are installed for real, with `pip --target` into a temporary folder."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RETRAIN = Path(sys.executable).with_name("retrain")
CONFIGS = sorted(p for p in EXAMPLES.rglob("*.toml") if p.name != "pyproject.toml")  # run configs, not packages
#: Examples that need an example package installed first (folder to pip install).
PACKAGES = {"advantage_plugin/run.toml": "advantage_plugin", "verifiers_env/run.toml": "verifiers_env"}
#: CPU-sized examples: one step each. (The GPU ones say so in their header and are only validated.)
CPU_SIZED = ["custom_reward/run.toml", "advantage_plugin/run.toml", "verifiers_env/run.toml"]


def _name(config: Path) -> str:
    return config.relative_to(EXAMPLES).as_posix()


def _retrain(*args: str, site: Path | None = None, cwd: Path = ROOT, timeout: float = 300):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(COLUMNS="200", NO_COLOR="1", HF_HUB_OFFLINE="1")
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return subprocess.run([str(RETRAIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """The examples' packages installed (no deps, from a copy: nothing is built inside examples/)."""
    site = tmp_path_factory.mktemp("examples_site")
    src = tmp_path_factory.mktemp("examples_src")
    offline_build = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    for folder in sorted(set(PACKAGES.values())):
        if folder == "verifiers_env" and importlib.util.find_spec("verifiers") is None:
            continue
        shutil.copytree(EXAMPLES / folder, src / folder)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                        *offline_build, "--target", str(site), str(src / folder)],
                       check=True, capture_output=True, text=True, timeout=300)
    return site


def test_every_example_is_listed_and_has_a_header_saying_what_it_shows_and_costs():
    assert {_name(c) for c in CONFIGS} >= {"gsm8k_lora_gpu.toml", "math_full_finetune.toml", *CPU_SIZED}
    readme = (EXAMPLES / "README.md").read_text()
    for config in CONFIGS:
        head = config.read_text().split("\n[", 1)[0]
        assert "Shows:" in head and "Costs:" in head, f"{_name(config)}: header needs 'Shows:' and 'Costs:'"
        top = _name(config).split("/")[0]
        assert f"`{top}" in readme, f"examples/README.md does not list {top}"


@pytest.mark.parametrize("config", CONFIGS, ids=_name)
def test_every_example_config_validates(config, example_site):
    name = _name(config)
    if name == "verifiers_env/run.toml" and importlib.util.find_spec("retrain_verifiers") is None:
        pytest.skip("retrain-verifiers is not installed")
    done = _retrain("config", str(config), site=example_site if name in PACKAGES else None)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", CPU_SIZED)
def test_cpu_sized_examples_run_a_step(name, example_site, tiny_model, tmp_path):
    if name == "verifiers_env/run.toml" and importlib.util.find_spec("retrain_verifiers") is None:
        pytest.skip("retrain-verifiers is not installed")
    overrides = {"model.model": json.dumps(str(tiny_model)), "training.max_steps": "1", "training.batch_size": "2",
                 "eval.num_problems": "2", "eval.at_start": "false",
                 "eval.at_end": "false", "logging.log_dir": json.dumps(str(tmp_path)),
                 "logging.run_name": '"example"'}
    if not tomllib.loads((EXAMPLES / name).read_text()).get("environment", {}).get("provider"):
        # (a provider with its own reward refuses [reward] keys)
        overrides["reward.workers"] = "1"
    args = [x for k, v in overrides.items() for x in ("--set", f"{k}={v}")]
    done = _retrain(str(EXAMPLES / name), *args, site=example_site, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "example" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss/policy" in r]
    assert len(steps) == 1 and steps[0]["loss/policy"] == steps[0]["loss/policy"]  # one finite step
