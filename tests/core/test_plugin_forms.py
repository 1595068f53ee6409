"""The two forms of a component (docs/plugins.md, "Two forms"), and registration hooks called
through pluggy with every spec argument (hookspecs.py: parameters are added, never removed)."""

from __future__ import annotations

import inspect
import textwrap
import types

import pytest
import torch
from cli_helpers import FIXTURES
from retrain import hookspecs
from retrain.advantages.credit import build_advantage
from retrain.errors import PluginError
from retrain.plugins import KINDS, PluginInfo, load_plugins
from retrain.plugins.discovery import registration_arguments
from retrain.rewards import build_reward
from retrain.testing.builders import make_ctx
from retrain.testing.contracts import check_advantage
from retrain.testing.packages import install_target, on_sys_path

REWARDS = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]])  # [B=2, G=4]
CENTERED = torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]])  # r - mean(r) per group, by hand


@pytest.fixture(scope="module")
def plain_site(tmp_path_factory):
    """tests/fixtures/plain_plugin_pkg (register("centered", fn), register("starts_with_answer", fn))
    installed with pip --target and put on sys.path: entry points found as after a normal install."""
    site = install_target(tmp_path_factory.mktemp("plain_site"), str(FIXTURES / "plain_plugin_pkg"))
    with on_sys_path(site):
        yield site


@pytest.mark.parametrize("name", ["centered", "retrain_plain_plugin.functions.centered",
                                  "retrain_plain_plugin.functions:centered"])
def test_a_plain_advantage_function_works_by_name_and_by_dotted_path(plain_site, name):
    ctx = make_ctx({"algorithm": {"advantage_mode": name}})
    assert ctx.registry.plugins["plain"].package == "retrain-plain-plugin"
    adv = build_advantage(ctx)
    assert adv.__name__ == "centered"  # the function itself, not something built from it
    assert torch.equal(adv(REWARDS), CENTERED)
    check_advantage(adv)
    comp = ctx.registry.get("advantage", name)
    assert comp.options() == [] and comp.summary == "Group-centred advantages: r - mean(r) per group."


@pytest.mark.parametrize("name", ["starts_with_answer", "retrain_plain_plugin.functions.starts_with_answer"])
def test_a_plain_reward_function_works_by_name_and_by_dotted_path(plain_site, name, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(plain_site))  # the reward's worker processes import it too
    ctx = make_ctx({"reward": {"type": name, "workers": 1, "timeout": 30.0}})
    comp = ctx.registry.get("reward", name)
    assert [o.name for o in comp.options()] == ["timeout", "workers"]  # the custom reward's, minus function
    reward = build_reward(ctx)
    try:
        result = reward.score(["4 apples", "5", ""], ["4", "4", "4"])
    finally:
        reward.close()
    assert (result.rewards, result.errors) == ([1.0, 0.0, 0.0], 0)


def test_a_factory_with_options_is_the_other_form():
    mod = _module("forms", '''
        from retrain import hookimpl

        def scaled(*, scale: float, ctx=None):
            """A factory: a required option is keyword-only."""
            return lambda rewards: scale * rewards

        @hookimpl
        def retrain_register_advantages(register):
            register("scaled", scaled)
    ''')
    reg = load_plugins(entry_points=False, extra=[mod])
    assert [(o.name, o.required) for o in reg.get("advantage", "scaled").options()] == [("scale", True)]
    assert torch.equal(reg.build("advantage", "scaled", options={"scale": 2.0})(REWARDS), 2.0 * REWARDS)


def test_a_plain_function_for_a_kind_without_a_plain_form_is_one_line():
    mod = _module("plain_engine", '''
        from retrain import hookimpl

        def generate(prompt_ids, params):
            """Not an engine."""

        @hookimpl
        def retrain_register_engines(register):
            register("fn_engine", generate)
    ''')
    with pytest.warns(UserWarning):
        reg = load_plugins(entry_points=False, extra=[mod])
    assert reg.plugins["plain_engine"].error == (
        'PluginError: engine "fn_engine": generate(prompt_ids, params) is a plain function, but an engine is '
        "registered as a class or a factory whose positional parameters all have defaults (its options). "
        'See docs/plugins.md, "Two forms".')


def test_hookimpls_may_take_fewer_arguments_than_the_spec():
    """pluggy passes each hookimpl the spec arguments it names: one written against an older, shorter
    spec keeps working when a parameter is added (here: an impl that takes none of them)."""
    mod = _module("fewer", '''
        from retrain import hookimpl

        called = []

        @hookimpl
        def retrain_register_transforms():
            called.append("transforms")

        @hookimpl
        def retrain_register_advantages(register):
            register("half", lambda: (lambda rewards: rewards / 2))
    ''')
    reg = load_plugins(entry_points=False, extra=[mod])
    info = reg.plugins["fewer"]
    assert info.ok and mod.called == ["transforms"]
    assert info.hooks == ["retrain_register_advantages", "retrain_register_transforms"]
    assert [c.name for c in info.components] == ["half"]


def test_a_hookimpl_argument_the_spec_lacks_fails_the_plugin():
    mod = _module("extra_arg", '''
        from retrain import hookimpl

        @hookimpl
        def retrain_register_advantages(register, flavour):
            register("x", dict)
    ''')
    with pytest.warns(UserWarning):
        reg = load_plugins(entry_points=False, extra=[mod])
    assert "Argument(s) {'flavour'} are declared in the hookimpl but can not be found in the hookspec" \
        in reg.plugins["extra_arg"].error


def test_registration_hooks_receive_every_spec_argument():
    for kind in KINDS.values():
        spec = getattr(hookspecs, kind.hook)
        supplied = registration_arguments(kind, PluginInfo("p", "pkg", "0", "m"))
        assert set(inspect.signature(spec).parameters) <= set(supplied), kind.hook


def test_dotted_path_to_a_plain_function_of_a_kind_without_one(tmp_path, monkeypatch):
    (tmp_path / "not_a_backend.py").write_text("def train(rollouts):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    reg = load_plugins(entry_points=False)
    with pytest.raises(PluginError) as e:
        reg.get("backend", "not_a_backend.train", where="r.toml [backend] backend")
    assert str(e.value).startswith('r.toml [backend] backend = "not_a_backend.train": backend '
                                   '"not_a_backend.train": train(rollouts) is a plain function, but a backend')


def _module(name: str, source: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    exec(textwrap.dedent(source), mod.__dict__)
    return mod
