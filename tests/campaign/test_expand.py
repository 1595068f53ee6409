"""Campaign expansion: names, isolated run directories, override precedence, validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from retrain.campaign.runner import child_command
from retrain.campaign.spec import DEFAULT_CONDITIONS, expand, launch_order, parse_conditions
from retrain.config import parse_value
from retrain.errors import ConfigError


def _toml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "camp.toml"
    path.write_text(body)
    return path


def test_default_ablation_times_seeds(tmp_path):
    path = _toml(tmp_path, f'[logging]\nlog_dir = "{tmp_path / "out"}"\n[campaign]\nseeds = [1, 2]\n')
    cdir, specs = expand(path)
    assert cdir == tmp_path / "out" / "camp"
    assert [s.name for s in specs] == [f"{c['name']}-s{seed}" for c in DEFAULT_CONDITIONS for seed in (1, 2)]
    assert [c["name"] for c in DEFAULT_CONDITIONS] == ["grpo", "maxrl", "maxrl+gtpo", "maxrl+gtpo_hicra",
                                                       "maxrl+gtpo_sepa"]
    hicra = next(s for s in specs if s.name == "maxrl+gtpo_hicra-s2")
    assert hicra.overrides["algorithm.advantage_mode"] == "maxrl"
    assert hicra.overrides["algorithm.transform_mode"] == "gtpo_hicra"
    assert hicra.overrides["training.seed"] == 2
    assert hicra.overrides["logging.wandb_group"] == "maxrl+gtpo_hicra"
    assert hicra.run_dir == cdir / "runs" / "maxrl+gtpo_hicra-s2"
    # every run has its own directory: no shared adapter/checkpoint/metrics paths
    dirs = {(s.overrides["logging.log_dir"], s.overrides["logging.run_name"]) for s in specs}
    assert len(dirs) == len(specs) == 10
    # runs start seed by seed, so a campaign stopped midway has the same seeds for every condition
    assert [s.name for s in launch_order(specs)][:6] == ["grpo-s1", "maxrl-s1", "maxrl+gtpo-s1", "maxrl+gtpo_hicra-s1",
                                                         "maxrl+gtpo_sepa-s1", "grpo-s2"]


def test_conditions_overrides_and_precedence(tmp_path):
    path = _toml(tmp_path, """
[training]
lr = 1e-5
[logging]
wandb_tags = ["ablation"]
[campaign]
seeds = [7]
dir = "CDIR"
[[campaign.conditions]]
name = "fast"
advantage_mode = "grpo"
"training.lr" = 3e-5
[[campaign.conditions]]
advantage_mode = "maxrl"
transform_mode = "gtpo"
gtpo.beta = 0.2
""".replace("CDIR", str(tmp_path / "c")))
    cli = {"training.lr": 2e-5, "training.max_steps": 3, "training.seed": 99}
    cdir, specs = expand(path, cli)
    fast, gtpo = specs
    assert cdir == tmp_path / "c"
    assert (fast.name, gtpo.name) == ("fast-s7", "maxrl+gtpo-s7")  # unnamed -> advantage+transform
    assert fast.overrides["training.lr"] == 3e-5   # the condition beats --set
    assert gtpo.overrides["training.lr"] == 2e-5   # --set applies to every run
    assert gtpo.overrides["gtpo.beta"] == 0.2      # dotted TOML key (nested table) works
    assert all(s.overrides["training.max_steps"] == 3 for s in specs)
    assert all(s.overrides["training.seed"] == 7 for s in specs)  # the campaign's seed wins
    assert fast.overrides["logging.wandb_tags"] == ["ablation", "condition:fast", "seed:7", "campaign:c"]
    assert fast.overrides["campaign.seeds"] == [] and fast.overrides["campaign.conditions"] == []


def test_child_command_round_trips_through_set(tmp_path):
    path = _toml(tmp_path, '[campaign]\nseeds = [3]\n[[campaign.conditions]]\nname = "a"\n'
                           '"planning.phrases" = ["let me", "wait \\"x\\""]\n')
    _, (spec,) = expand(path)
    cmd = child_command(path, spec, resume=True)
    assert cmd[-2:] == ["--resume", "latest"]
    sets = dict(cmd[i + 1].split("=", 1) for i, arg in enumerate(cmd) if arg == "--set")
    assert parse_value(sets["planning.phrases"]) == ["let me", 'wait "x"']
    assert parse_value(sets["campaign.conditions"]) == []
    assert parse_value(sets["logging.run_name"]) == "a-s3"


def test_bad_conditions_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"#2: unknown key \[training\] lrr\. Did you mean lr\?"):
        parse_conditions([{"name": "a"}, {"name": "b", "training.lrr": 1}], "c.toml")
    with pytest.raises(ConfigError, match='duplicate condition name "a"'):
        parse_conditions([{"name": "a"}, {"name": "a"}], "c.toml")
    with pytest.raises(ConfigError, match=r'unknown key "advantage_mod"\. Did you mean "advantage_mode"\?'):
        parse_conditions([{"advantage_mod": "grpo"}], "c.toml")
    with pytest.raises(ConfigError, match="name 'a/b' must be"):
        parse_conditions([{"name": "a/b"}], "c.toml")
    path = _toml(tmp_path, "[campaign]\nseeds = [1, 1]\n")
    with pytest.raises(ConfigError, match="seeds repeat"):
        expand(path)


def test_bad_component_name_fails_before_any_run_starts(tmp_path):
    from retrain.campaign.runner import run_campaign
    from retrain.errors import RetrainError

    path = _toml(tmp_path, f'[logging]\nlog_dir = "{tmp_path / "out"}"\n[campaign]\nseeds = [1]\n'
                           '[[campaign.conditions]]\nname = "ok"\n[[campaign.conditions]]\nname = "typo"\n'
                           'transform_mode = "gtpo_hirca"\n')
    with pytest.raises(RetrainError, match=r'^campaign condition "typo": .*transform_mode = "gtpo_hirca": no such '
                                           r'transform\. Did you mean "gtpo_hicra"\?'):
        run_campaign(path, {})
    assert not (tmp_path / "out").exists()


def _manifest_runs(path: Path, overrides: dict) -> dict:
    from retrain.campaign.runner import Manifest, resolve_child
    from retrain.config import load_config

    cdir, specs = expand(path, overrides)
    cdir.mkdir(parents=True, exist_ok=True)
    resolved = {s.name: resolve_child(path, s) for s in specs}
    return Manifest.open(cdir, path, overrides, load_config(path, overrides), specs, resolved).data["runs"]


def test_manifest_flags_a_changed_training_config_not_a_changed_worker_count(tmp_path):
    path = _toml(tmp_path, f'[logging]\nlog_dir = "{tmp_path / "out"}"\n[campaign]\nseeds = [1]\n'
                           'conditions = [{ name = "grpo", advantage_mode = "grpo" }]\n')
    assert _manifest_runs(path, {})["grpo-s1"]["config_changed"] is False  # the first start: nothing to compare
    # how the pool runs (workers, stagger) is not what a run learns: a resumed campaign with more workers
    assert _manifest_runs(path, {"campaign.max_workers": 3, "campaign.stagger_seconds": 2.0})["grpo-s1"][
        "config_changed"] is False
    assert _manifest_runs(path, {"training.lr": 1e-3})["grpo-s1"]["config_changed"] is True
