"""The ``retrain`` command line, run as a real subprocess (console script of this environment)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import FIXTURES, RETRAIN, cli_env, run_cli
from retrain.testing.packages import install_target

HEAVY = ("torch", "transformers", "peft", "vllm", "verifiers")


def imported_heavy_modules(*argv: str, extra_path: Path | None = None) -> list[str]:
    code = (
        "import sys\nfrom retrain.cli.main import main\n"
        f"try:\n    main({list(argv)!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=cli_env(extra_path))
    return json.loads(out.stderr.strip().splitlines()[-1].replace("'", '"'))


@pytest.mark.parametrize("argv", [("--help",), ("plugins", "list"), ("plugins", "list", "--all", "--json")])
def test_help_and_plugins_list_import_no_torch(argv, fixture_plugin):
    assert imported_heavy_modules(*argv, extra_path=fixture_plugin) == []


def test_done_when_typos_are_one_line_errors(tmp_path):
    (tmp_path / "a.toml").write_text("[trainig]\nmax_steps = 5\n")
    (tmp_path / "b.toml").write_text("[training]\nmax_step = 5\n")
    a = run_cli("a.toml", cwd=tmp_path)
    assert (a.returncode, a.stdout, a.stderr) == (2, "", "error: a.toml: unknown section [trainig]. Did you mean [training]?\n")
    b = run_cli("b.toml", cwd=tmp_path)
    assert (b.returncode, b.stderr) == (2, "error: b.toml: unknown key [training] max_step. Did you mean max_steps?\n")
    c = run_cli("config", "b.toml", cwd=tmp_path)
    assert (c.returncode, c.stderr) == (2, b.stderr)


def test_missing_config_file(tmp_path):
    result = run_cli("nope.toml", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, "error: nope.toml: no such config file. Create one with `retrain init`.\n")


def test_bad_set_override_is_one_line(tmp_path, write_config, fixture_plugin):
    path = write_config()
    result = run_cli("config", str(path), "--set", "training.lr=fast", extra_path=fixture_plugin)
    assert (result.returncode, result.stderr) == \
        (2, 'error: --set training.lr: [training] lr = "fast": expected number, got string.\n')
    result = run_cli(str(path), "--set", "training", extra_path=fixture_plugin)
    assert result.stderr == "error: --set training: expected section.key=value, e.g. --set training.lr=1e-5.\n"


def test_config_prints_the_resolved_config_with_overrides(tmp_path, write_config, fixture_plugin):
    path = write_config('[algorithm]\nadvantage_mode = "fixture_adv"\n\n[fixture_adv]\nscale = 2\n')
    result = run_cli("config", str(path), "--seed", "7", "--wandb-project", "proj", "--set", "training.lr=3e-5",
                     "--set", "logging.loggers=[\"fixture_log\"]", extra_path=fixture_plugin)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"# resolved from {path}\n")
    for line in ['advantage_mode = "fixture_adv"', "seed = 7", 'wandb_project = "proj"', "lr = 3e-05",
                 "[fixture_adv]\nscale = 2"]:
        assert line in text, line
    again = tmp_path / "again.toml"
    again.write_text(text)
    assert run_cli("config", str(again), extra_path=fixture_plugin).stdout.split("\n", 1)[1] == text.split("\n", 1)[1]


def test_third_party_plugin_is_listed_and_selectable(write_config, fixture_plugin):
    listing = run_cli("plugins", "list", extra_path=fixture_plugin)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("fixture "))
    assert row.split()[:3] == ["fixture", "retrain-fixture-plugin", "0.3.1"]
    assert row.split("0.3.1", 1)[1].strip() == (
        "advantage: fixture_adv · backend: fixture_backend · command: fixture-cmd · engine: fixture_engine · "
        "environment: fixture_env · logger: fixture_log · reward: fixture_reward")
    assert listing.stdout.splitlines()[2].split() == ["PLUGIN", "PACKAGE", "VERSION", "PROVIDES"]
    head = listing.stdout.splitlines()[0]
    assert head.startswith("retrain-core 0.1.0 · python ") and head.endswith('(entry-point group "retrain")')
    ok = run_cli("config", str(write_config('[algorithm]\nadvantage_mode = "fixture_adv"\n')), extra_path=fixture_plugin)
    assert ok.returncode == 0, ok.stderr


def test_plugin_option_did_you_mean_from_toml(write_config, fixture_plugin):
    path = write_config('[algorithm]\nadvantage_mode = "fixture_adv"\n\n[fixture_adv]\nscael = 2.0\n')
    result = run_cli("config", str(path), extra_path=fixture_plugin)
    assert (result.returncode, result.stderr) == (2, f'error: {path} [fixture_adv]: unknown option scael for '
                                                     'advantage mode "fixture_adv". Did you mean scale? Accepted: center, scale.\n')
    path = write_config('[algorithm]\nadvantage_mode = "fixture_ad"\n')
    result = run_cli("config", str(path), extra_path=fixture_plugin)
    assert result.stderr.startswith(f'error: {path} [algorithm] advantage_mode = "fixture_ad": no such advantage mode. '
                                    'Did you mean "fixture_adv"?')
    path = write_config('[fixture_ad]\nscale = 1.0\n')
    assert run_cli("config", str(path), extra_path=fixture_plugin).stderr == \
        f"error: {path}: unknown section [fixture_ad]. Did you mean [fixture_adv]?\n"


def test_plugins_list_json_schema(fixture_plugin):
    result = run_cli("plugins", "list", "--json", "--all", extra_path=fixture_plugin)
    data = json.loads(result.stdout)
    assert set(data) == {"schema", "retrain_core", "python", "entry_point_group", "plugins", "conflicts"}
    assert (data["schema"], data["entry_point_group"]) == (1, "retrain")
    plugin_keys = {"name", "package", "version", "module", "file", "builtin", "status", "error", "hooks", "components"}
    for p in data["plugins"]:
        assert set(p) == plugin_keys
        assert p["status"] in ("ok", "failed") and isinstance(p["builtin"], bool)
        assert all(isinstance(p[k], str) for k in ("name", "package", "version", "module", "file"))
        assert (p["error"] is None) == (p["status"] == "ok")
        for c in p["components"]:
            assert set(c) == {"kind", "name", "summary", "config_section", "options"}
            for o in c["options"]:
                assert set(o) == {"name", "type", "default", "required"} and isinstance(o["required"], bool)
    fixture = next(p for p in data["plugins"] if p["name"] == "fixture")
    adv = next(c for c in fixture["components"] if c["kind"] == "advantage")
    assert adv == {"kind": "advantage", "name": "fixture_adv", "config_section": "fixture_adv",
                   "summary": "Fixture advantage: rewards minus the group mean, times scale.",
                   "options": [{"name": "scale", "type": "number", "default": 1.0, "required": False},
                               {"name": "center", "type": "boolean", "default": True, "required": False}]}
    assert fixture["hooks"] == sorted(fixture["hooks"]) and "retrain_register_commands" in fixture["hooks"]
    without_all = json.loads(run_cli("plugins", "list", "--json", extra_path=fixture_plugin).stdout)
    assert not any(p["builtin"] for p in without_all["plugins"])


def test_plugins_list_kind_filter(fixture_plugin):
    result = run_cli("plugins", "list", "--kind", "advantages", extra_path=fixture_plugin)
    assert result.returncode == 0
    assert "fixture_adv" in result.stdout and "fixture_backend" not in result.stdout
    bad = run_cli("plugins", "list", "--kind", "advantag", extra_path=fixture_plugin)
    assert bad.returncode == 2
    assert bad.stderr.startswith('error: unknown component kind "advantag". Did you mean "advantage"? Kinds: backend,')


def test_plugins_show(fixture_plugin):
    result = run_cli("plugins", "show", "fixture", extra_path=fixture_plugin)
    assert result.returncode == 0
    assert "package  retrain-fixture-plugin 0.3.1" in result.stdout
    assert "module   retrain_fixture_plugin.plugin" in result.stdout
    assert ("advantage fixture_adv: Fixture advantage: rewards minus the group mean, times scale.\n"
            "  options (section [fixture_adv]):\n    scale: number (default 1.0)\n    center: boolean (default True)\n"
            ) in result.stdout
    assert run_cli("plugins", "show", "fixture_adv", extra_path=fixture_plugin).stdout == result.stdout  # a component finds its plugin
    missing = run_cli("plugins", "show", "fixtur", extra_path=fixture_plugin)
    assert missing.returncode == 2
    assert missing.stderr.startswith('error: no plugin or component named "fixtur". Did you mean "fixture"?')


def test_plugin_command_is_mounted(fixture_plugin):
    assert "fixture-cmd" in run_cli("--help", extra_path=fixture_plugin).stdout
    result = run_cli("fixture-cmd", "hello", "--name", "ada", extra_path=fixture_plugin)
    assert (result.returncode, result.stdout) == (0, "hello ada from the fixture plugin\n")


def test_broken_plugin_warns_fails_its_row_and_is_an_error_when_needed(write_config, broken_plugin, fixture_plugin):
    path = write_config('[algorithm]\nadvantage_mode = "fixture_adv"\n')
    warning = ('warning: skipped plugin "broken" (retrain-broken 0.0.2): ModuleNotFoundError: No module named '
               "'scipy_not_installed'. See `retrain plugins show broken`.\n")
    ok = run_cli("config", str(path), extra_path=[broken_plugin, fixture_plugin])
    assert (ok.returncode, ok.stderr) == (0, warning)
    listing = run_cli("plugins", "list", extra_path=[broken_plugin, fixture_plugin])
    assert "1 plugin failed to load:" in listing.stdout
    row = next(line for line in listing.stdout.splitlines() if line.startswith("broken "))
    assert row.split()[:3] == ["broken", "retrain-broken", "0.0.2"]
    assert row.endswith("ModuleNotFoundError: No module named 'scipy_not_installed'  → retrain plugins show broken")
    show = run_cli("plugins", "show", "broken", extra_path=[broken_plugin, fixture_plugin])
    assert "status   FAILED: ModuleNotFoundError: No module named 'scipy_not_installed'" in show.stdout
    assert "traceback:" in show.stdout and "import scipy_not_installed" in show.stdout
    check = run_cli("plugins", "check", extra_path=[broken_plugin, fixture_plugin])
    assert check.returncode == 1
    assert "FAIL  broken (retrain-broken 0.0.2): ModuleNotFoundError: No module named 'scipy_not_installed'" \
        in check.stdout
    strict = run_cli("config", str(path), extra_path=[broken_plugin, fixture_plugin], RETRAIN_STRICT_PLUGINS="1")
    assert (strict.returncode, strict.stderr) == (2, 'error: plugin "broken" (retrain-broken 0.0.2) failed to load '
                                                     "(RETRAIN_STRICT_PLUGINS=1): ModuleNotFoundError: No module "
                                                     "named 'scipy_not_installed'\n")
    required = run_cli("config", str(write_config('[plugins]\nrequire = ["broken"]\n')), extra_path=[broken_plugin, fixture_plugin])
    assert required.stderr == ('error: plugin "broken" (retrain-broken 0.0.2) failed to load (it is listed in '
                               "[plugins] require): ModuleNotFoundError: No module named 'scipy_not_installed'\n")
    selected = run_cli("config", str(write_config('[algorithm]\nadvantage_mode = "broken_adv"\n')),
                       extra_path=[broken_plugin, fixture_plugin])
    assert selected.returncode == 2
    assert selected.stderr.endswith(
        'no such advantage mode. It may come from a plugin that failed to load: "broken" (retrain-broken 0.0.2): '
        "ModuleNotFoundError: No module named 'scipy_not_installed'. See `retrain plugins show broken`.\n")


def test_plugins_check_passes_on_a_clean_install(fixture_plugin):
    """Every component of retrain-core, the first-party plugins and a well-made third-party plugin
    passes: exit code 0 (dr_grpo once failed as "takes **kwargs": it has no __init__)."""
    result = run_cli("plugins", "check", extra_path=fixture_plugin)
    lines = result.stdout.splitlines()
    assert "ok    fixture (retrain-fixture-plugin 0.3.1): 7 components" in lines
    assert "ok    builtin.advantages (retrain-core 0.1.0): 7 components" in lines
    assert [line for line in lines if not line.startswith("ok    ")] == lines[-2:], result.stdout
    assert lines[-2].startswith("Built with default options: ")
    assert lines[-1].endswith(" checked, 0 problems.") and result.returncode == 0, result.stdout


def test_plugins_check_builds_components_with_their_defaults(tmp_path):
    site = install_target(tmp_path / "site", str(FIXTURES / "unbuildable_plugin_pkg"))
    result = run_cli("plugins", "check", extra_path=site)
    assert result.returncode == 1
    assert ("FAIL  unbuildable (retrain-unbuildable 0.0.1): 1 component\n"
            "        advantage inverse: building it with its default options failed: ZeroDivisionError: "
            "float division by zero\n") in result.stdout
    assert result.stdout.endswith(" checked, 1 problem.\n")


def test_dotted_path_to_a_file_in_the_working_directory(tmp_path, write_config, fixture_plugin):
    (tmp_path / "my_adv.py").write_text(
        'class MyAdv:\n    """Mine."""\n\n    def __init__(self, k: int = 1) -> None:\n        self.k = k\n')
    for name in ("./my_adv.py:MyAdv", "my_adv.MyAdv"):
        path = write_config(f'[algorithm]\nadvantage_mode = "{name}"\n')
        result = run_cli("config", path.name, cwd=tmp_path, extra_path=fixture_plugin)
        assert result.returncode == 0, result.stderr


def test_help_init_and_man(tmp_path):
    ref = run_cli("help", "training")
    assert ref.returncode == 0 and "  max_steps = 100  (integer)\n      Optimizer steps. Range: at least 1.\n" in ref.stdout
    assert run_cli("help", "trainig").stderr == "error: retrain help: unknown section [trainig]. Did you mean [training]?\n"
    assert "[plugins]" in run_cli("help").stdout
    init = run_cli("init", "new.toml", cwd=tmp_path)
    assert (init.returncode, init.stdout) == (0, "wrote new.toml; run it with: retrain new.toml\n")
    again = run_cli("init", "new.toml", cwd=tmp_path)
    assert again.stderr == "error: new.toml already exists; pass --force to overwrite it, or choose another path.\n"
    topics = run_cli("man")
    assert "  quickstart" in topics.stdout and "  config" in topics.stdout
    doc = json.loads(run_cli("man", "--format", "json", "--topic", "quickstart").stdout)
    assert doc["topic"] == "quickstart" and doc["title"] == "Quickstart" and "retrain init" in doc["text"]
    assert run_cli("man", "--path").stdout.strip() == str(FIXTURES.parents[1] / "docs")
    assert run_cli("man", "quikstart").stderr.startswith('error: retrain man: no topic "quikstart". Did you mean "quickstart"?')


def test_version_and_console_script():
    assert RETRAIN.is_file()
    assert run_cli("--version").stdout == "retrain-core 0.1.0\n"


@pytest.mark.parametrize("argv, expected", [
    (["x.toml", "--resume"], "latest"),
    (["x.toml", "--resume", "--seed", "3"], "latest"),
    (["x.toml", "--resume", "runs/x/checkpoints/step_4"], "runs/x/checkpoints/step_4"),
    (["x.toml"], None),
])
def test_resume_value_is_optional(argv, expected):
    import typer

    from retrain.cli.main import app

    run = typer.main.get_command(app).commands["run"]
    ctx = run.make_context("run", list(argv))
    assert ctx.params["resume"] == expected
