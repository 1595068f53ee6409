"""Plugin loading, the failure policy, selection, options and dotted paths (in-process)."""

from __future__ import annotations

import textwrap
import types
import warnings

import pytest

from retrain.config import config_from_dict
from retrain.errors import PluginError
from retrain.plugins import PluginLoadWarning, load_plugins, normalize_kind

GOOD = '''
from retrain import hookimpl


class Scaled:
    """Scaled advantages."""

    def __init__(self, scale: float = 1.0, center: bool = True) -> None:
        self.scale, self.center = scale, center


def needs_path(*, path: str, ctx=None):
    """Needs a path (a required option: keyword-only)."""
    return (path, ctx)


@hookimpl
def retrain_register_advantages(register):
    register("scaled", Scaled)
    register("needs_path", needs_path)
'''

RAISES_IN_HOOK = '''
from retrain import hookimpl


@hookimpl
def retrain_register_transforms(register):
    raise RuntimeError("boom")
'''

TYPO_HOOK = '''
from retrain import hookimpl


@hookimpl
def retrain_register_advantage(register):
    register("x", dict)
'''


def module(name: str, source: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    exec(textwrap.dedent(source), mod.__dict__)
    return mod


def registry(*mods, **kwargs):
    return load_plugins(entry_points=False, extra=list(mods), **kwargs)


def message(fn, *args, **kwargs) -> str:
    with pytest.raises(PluginError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_in_process_plugin_registers_and_builds_with_options():
    reg = registry(module("good", GOOD))
    assert "scaled" in reg.names("advantage")
    info = reg.plugins["good"]
    assert info.ok and info.hooks == ["retrain_register_advantages"]
    adv = reg.build("advantage", "scaled", options={"scale": 2.0})
    assert (adv.scale, adv.center) == (2.0, True)
    assert reg.build("advantage", "needs_path", options={"path": "p"}, ctx="CTX") == ("p", "CTX")
    comp = reg.get("advantage", "scaled")
    assert comp.summary == "Scaled advantages." and comp.config_section == "scaled"
    assert [(o.name, o.type, o.default) for o in comp.options()] == [("scale", "number", 1.0), ("center", "boolean", True)]


def test_unknown_option_lists_accepted_ones_with_did_you_mean():
    reg = registry(module("good", GOOD))
    assert message(reg.build, "advantage", "scaled", options={"scal": 2.0}, section_label="r.toml [scaled]") == \
        'r.toml [scaled]: unknown option scal for advantage mode "scaled". Did you mean scale? Accepted: center, scale.'


def test_option_types_are_checked_and_required_options_named():
    reg = registry(module("good", GOOD))
    assert message(reg.build, "advantage", "scaled", options={"scale": "big"}, section_label="r.toml [scaled]") == \
        "r.toml [scaled]: scale = \"big\": expected number, got string."
    assert message(reg.build, "advantage", "needs_path", options={}, section_label="r.toml [needs_path]") == \
        'r.toml [needs_path]: advantage mode "needs_path" needs option(s) path.'


def test_unknown_name_suggests_and_lists_available():
    reg = registry(module("good", GOOD))
    assert message(reg.get, "advantage", "scaledd", where="r.toml [algorithm] advantage_mode") == (
        'r.toml [algorithm] advantage_mode = "scaledd": no such advantage mode. Did you mean "scaled"? '
        "Available: " + ", ".join(reg.names("advantage")) + "; or a dotted path module.function.")


def test_first_party_name_that_is_not_installed_says_what_to_install():
    reg = registry()
    assert message(reg.get, "transform", "gtpo_hirca", where="r.toml [algorithm] transform_mode") == (
        'r.toml [algorithm] transform_mode = "gtpo_hirca": no such transform. Did you mean "gtpo_hicra"? '
        "(provided by retrain-hicra: pip install retrain-hicra)")
    assert message(reg.get, "engine", "vllm") == \
        'engine "vllm": no such engine. (provided by retrain-vllm: pip install retrain-vllm)'


def test_plugin_whose_hook_raises_costs_a_warning_and_a_failed_row():
    with pytest.warns(PluginLoadWarning) as record:
        reg = registry(module("good", GOOD), module("bad", RAISES_IN_HOOK))
    assert [str(w.message) for w in record] == [
        'skipped plugin "bad" ((in-process)): RuntimeError: boom. See `retrain plugins show bad`.']
    assert [p.name for p in reg.failed()] == ["bad"]
    assert reg.plugins["bad"].components == [] and "scaled" in reg.names("advantage")
    # a run that selects a name that may come from it says so, chaining the original error
    with pytest.raises(PluginError) as info:
        reg.get("transform", "bad_transform", where="r.toml [algorithm] transform_mode")
    assert str(info.value) == (
        'r.toml [algorithm] transform_mode = "bad_transform": no such transform. It may come from a plugin that '
        'failed to load: "bad" ((in-process)): RuntimeError: boom. See `retrain plugins show bad`.')
    assert isinstance(info.value.__cause__, RuntimeError)


def test_strict_mode_and_require_turn_failures_into_errors(monkeypatch):
    with pytest.raises(PluginError) as info:
        registry(module("bad", RAISES_IN_HOOK), strict=True)
    assert str(info.value) == 'plugin "bad" ((in-process)) failed to load (RETRAIN_STRICT_PLUGINS=1): RuntimeError: boom'
    assert isinstance(info.value.__cause__, RuntimeError)
    monkeypatch.setenv("RETRAIN_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        registry(module("bad", RAISES_IN_HOOK))
    monkeypatch.delenv("RETRAIN_STRICT_PLUGINS")
    assert message(registry, module("bad", RAISES_IN_HOOK), require=["bad"]) == \
        'plugin "bad" ((in-process)) failed to load (it is listed in [plugins] require): RuntimeError: boom'
    assert message(registry, require=["retrain-nothere"]) == (
        "[plugins] require lists retrain-nothere, which is not installed. Install it "
        "(pip install retrain-nothere) or remove it from require.")


def test_a_misspelt_hook_fails_the_plugin_instead_of_being_ignored():
    with pytest.warns(PluginLoadWarning):
        reg = registry(module("typo", TYPO_HOOK))
    assert reg.plugins["typo"].error == \
        'PluginError: unknown hook retrain_register_advantage. Did you mean "retrain_register_advantages"?'


def test_a_name_registered_twice_keeps_the_first_and_warns():
    with pytest.warns(PluginLoadWarning) as record:
        reg = registry(module("one", GOOD), module("two", GOOD))
    assert reg.get("advantage", "scaled").plugin == "one"
    assert str(record[0].message) == \
        'plugin "two" registers advantage mode "scaled", already provided by "one"; the first one is used'
    assert len(reg.conflicts) == 2


EVERY_KIND = GOOD + '''

class Thing:
    """A thing."""


@hookimpl
def retrain_register_backends(register):
    register("x", Thing)


@hookimpl
def retrain_register_engines(register):
    register("x", Thing)


@hookimpl
def retrain_register_rewards(register):
    register("x", Thing)


@hookimpl
def retrain_register_environments(register):
    register("x", Thing)
'''


def test_check_config_resolves_selected_names_and_validates_plugin_sections(monkeypatch):
    import retrain.plugins.discovery

    monkeypatch.setattr(retrain.plugins.discovery, "BUILTIN_MODULES", [])
    reg = registry(module("every", EVERY_KIND))
    base = {"backend": {"backend": "x"}, "inference": {"engine": "x"}, "reward": {"type": "x"},
            "data": {"source": "x"}, "logging": {"loggers": []}, "algorithm": {"advantage_mode": "scaled"}}
    reg.check_config(config_from_dict({**base, "scaled": {"scale": 2.0}}, source="r.toml"))
    bad = config_from_dict({**base, "scaled": {"scael": 2.0}}, source="r.toml")
    assert message(reg.check_config, bad) == \
        'r.toml [scaled]: unknown option scael for advantage mode "scaled". Did you mean scale? Accepted: center, scale.'
    bad = config_from_dict({**base, "scaled": {"scale": "x"}}, source="r.toml")
    assert message(reg.check_config, bad) == "r.toml [scaled]: scale = \"x\": expected number, got string."
    bad = config_from_dict({**base, "algorithm": {"advantage_mode": "scaledd"}}, source="r.toml")
    assert message(reg.check_config, bad).startswith(
        'r.toml [algorithm] advantage_mode = "scaledd": no such advantage mode. Did you mean "scaled"?')
    bad = config_from_dict({**base, "logging": {"loggers": ["wandb"]}}, source="r.toml")
    assert message(reg.check_config, bad) == ('r.toml [logging] loggers = "wandb": no such logger. '
                                              "Available: none installed; or a dotted path module.function.")
    # "none" needs no registration; the planning detector only matters with a transform
    reg.check_config(config_from_dict({**base, "algorithm": {"transform_mode": "none", "advantage_mode": "scaled"},
                                       "planning": {"detector": "nothing"}}, source="r.toml"))


def test_dotted_paths_module_in_working_dir_file_path_and_config_folder(tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cfgdir").mkdir()
    (tmp_path / "cwd" / "my_adv_mod.py").write_text('def make(scale: float = 1.0):\n    """Mine."""\n    return scale\n')
    (tmp_path / "cfgdir" / "next_to_cfg.py").write_text('def make(k: int = 2):\n    """Beside the config."""\n'
                                                         '    return k\n')
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.syspath_prepend(str(tmp_path / "unused"))
    reg = registry()
    assert reg.build("advantage", "my_adv_mod.make", options={"scale": 3.0}) == 3.0
    assert reg.build("advantage", "my_adv_mod:make") == 1.0
    assert reg.build("advantage", "./my_adv_mod.py:make", options={"scale": 4.0}) == 4.0
    comp = reg.get("advantage", "my_adv_mod.make")
    assert comp.plugin == "dotted path" and comp.summary == "Mine."
    reg.search_dirs.append(tmp_path / "cfgdir")
    assert reg.build("advantage", "next_to_cfg.make") == 2
    assert reg.build("advantage", "next_to_cfg.py:make", options={"k": 5}) == 5


def test_dotted_path_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "has_attrs.py").write_text("def make_spec():\n    return 1\n")
    reg = registry()
    assert message(reg.get, "transform", "has_attrs.make_spce", where="r.toml [algorithm] transform_mode") == (
        'r.toml [algorithm] transform_mode = "has_attrs.make_spce": module \'has_attrs\' has no attribute '
        "'make_spce'. Did you mean \"make_spec\"?")
    assert message(reg.get, "transform", "no_such_mod_xyz.f", where="w") == (
        f'w = "no_such_mod_xyz.f": cannot import module \'no_such_mod_xyz\' (looked in {tmp_path} and '
        "site-packages). Check the name, or put no_such_mod_xyz.py next to the config.")
    assert message(reg.get, "transform", "./missing.py:f", where="w") == \
        f'w = "./missing.py:f": no such file ./missing.py (looked in {tmp_path}).'


def test_normalize_kind():
    assert normalize_kind("advantages") == "advantage"
    assert normalize_kind("planning-detector") == "planning_detector"
    with pytest.raises(PluginError) as info:
        normalize_kind("advantag")
    assert str(info.value).startswith('unknown component kind "advantag". Did you mean "advantage"? Kinds: backend,')


def test_loading_warns_nothing_for_healthy_plugins():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry(module("good", GOOD))


def test_plugins_list_text_matches_the_conventions_layout():
    import platform

    from retrain.cli.plugins_cmd import render_list
    from retrain.plugins import Component, PluginInfo, Registry

    def comps(plugin, *pairs):
        return [Component(kind, name, dict, plugin) for kind, name in pairs]

    infos = [
        PluginInfo("hicra", "retrain-hicra", "0.1.0", "retrain_hicra.plugin", components=comps(
            "hicra", ("transform", "gtpo_hicra"), ("planning_detector", "mined-grams"), ("command", "hicra"))),
        PluginInfo("verifiers", "retrain-verifiers", "0.1.0", "m", components=comps("verifiers", ("environment", "verifiers"))),
        PluginInfo("vllm", "retrain-vllm", "0.1.0", "m"),
        PluginInfo("passk", "retrain-passk", "0.0.2", "m", error="ModuleNotFoundError: No module named 'scipy'"),
        PluginInfo("builtin.advantages", "retrain-core", "0.1.0", "m", builtin=True, components=comps(
            "builtin.advantages", ("advantage", "grpo"), ("advantage", "maxrl"), ("backend", "local"))),
    ]
    reg = Registry(None, {p.name: p for p in infos})
    assert render_list(reg) == (
        f"retrain-core 0.1.0 · python {platform.python_version()} · 3 plugins (entry-point group \"retrain\")\n"
        "\n"
        "PLUGIN     PACKAGE            VERSION  PROVIDES\n"
        "hicra      retrain-hicra      0.1.0    transform: gtpo_hicra · planning detector: mined-grams · command: hicra\n"
        "verifiers  retrain-verifiers  0.1.0    environment: verifiers\n"
        "vllm       retrain-vllm       0.1.0    (registers nothing yet)\n"
        "\n"
        "1 plugin failed to load:\n"
        "passk      retrain-passk      0.0.2    ModuleNotFoundError: No module named 'scipy'  → retrain plugins show passk\n"
        "\n"
        "Built-ins hidden (retrain-core: 1 backend, 2 advantages); --all lists them.\n")
    assert "builtin.advantages  retrain-core" in render_list(reg, show_all=True)
    only_adv = render_list(reg, kind="advantage")
    assert "advantage: grpo, maxrl" in only_adv and "hicra" not in only_adv.split("failed")[0]


SHARED_SECTION = '''
from retrain import hookimpl


def shared_backend(alpha: float = 1.0):
    """A backend reading [shared]."""
    return ("backend", alpha)


def shared_engine(beta: int = 2):
    """An engine reading [shared] too."""
    return ("engine", beta)


shared_backend.config_section = shared_engine.config_section = "shared"


@hookimpl
def retrain_register_backends(register):
    register("sb", shared_backend)


@hookimpl
def retrain_register_engines(register):
    register("se", shared_engine)
'''


def test_a_section_read_by_two_components_is_checked_and_built_like_one():
    """One check, one message, whether one component reads a section or several; each component is
    built with the keys it accepts (the other's keys are not 'unknown' to it)."""
    reg = registry(module("shared", SHARED_SECTION))
    base = {"backend": {"backend": "sb"}, "inference": {"engine": "se"}}
    cfg = config_from_dict({**base, "shared": {"alpha": 0.5, "beta": 3}}, source="r.toml")
    reg.check_config(cfg)
    ctx = types.SimpleNamespace(config=cfg)
    assert reg.build("backend", "sb", ctx=ctx) == ("backend", 0.5)
    assert reg.build("engine", "se", ctx=ctx) == ("engine", 3)
    typo = config_from_dict({**base, "shared": {"alpah": 0.5}}, source="r.toml")
    expected = ('r.toml [shared]: unknown option alpah for backend "sb" and engine "se". Did you mean alpha? '
                "Accepted: alpha, beta.")
    assert message(reg.check_config, typo) == expected
    assert message(reg.build, "backend", "sb", ctx=types.SimpleNamespace(config=typo)) == expected
    wrong = config_from_dict({**base, "shared": {"beta": "x"}}, source="r.toml")
    assert message(reg.check_config, wrong) == 'r.toml [shared]: beta = "x": expected integer, got string.'
