"""Discovery: built-in modules, then ``retrain`` entry points, then in-process modules, each
registered with pluggy and asked for its components through the registration hooks.

Failure policy (docs/plugins.md, "When a plugin fails"): a plugin that fails to import, or whose
registration hook raises, costs one :class:`PluginLoadWarning` and a "failed" row; it is a
:class:`PluginError` under ``RETRAIN_STRICT_PLUGINS=1`` or when listed in ``[plugins] require``
(and when a run selects a name only it could provide: see ``Registry.get``).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import warnings
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import pluggy

from retrain import hookspecs
from retrain.components import Component
from retrain.errors import PluginError, did_you_mean
from retrain.plugins.info import PluginInfo
from retrain.plugins.kinds import KIND_OF_HOOK, KINDS, Kind, as_factory

ENTRY_POINT_GROUP = "retrain"

#: Modules of retrain-core that register built-in components (each shows as builtin.<area>).
BUILTIN_MODULES: list[str] = [
    "retrain.rewards.plugin",
    "retrain.environments.plugin",
    "retrain.advantages.plugin",
    "retrain.backends.plugin",
    "retrain.engines.plugin",
    "retrain.loggers.plugin",
    "retrain.campaign.plugin",
    "retrain.bench.plugin",
    "retrain.cli.plugin",
]


class PluginLoadWarning(UserWarning):
    """A plugin failed to load and was skipped (the CLI prints it as one ``warning:`` line)."""


def registration_arguments(kind: Kind, info: PluginInfo) -> dict[str, Any]:
    """Every argument the registration hooks' specs declare, by name. The hooks are called
    through pluggy with all of them; each hookimpl receives the ones it names, so a spec can
    gain parameters without breaking plugins written before (hookspecs.py's promise)."""

    def register(name: str, factory: Callable[..., Any]) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"register() needs a non-empty string name, got {name!r}")
        if not callable(factory):
            raise TypeError(f"register({name!r}, ...) needs a callable factory, got {type(factory).__name__}")
        info.components.append(Component(kind.name, name, as_factory(kind, name, factory), info.name,
                                         target=factory))

    return {"register": register}


def _call_registration_hooks(pm: pluggy.PluginManager, info: PluginInfo, plugin: object) -> None:
    """Validate the plugin's hooks against the specs, then call its registration hooks through
    pluggy (only this plugin's implementations, so components are attributed to it)."""
    callers = pm.get_hookcallers(plugin) or []
    specs = {name for name in dir(hookspecs) if name.startswith("retrain_")}
    for caller in callers:
        if caller.spec is None:  # a typo in a hook name would otherwise be ignored silently
            raise PluginError(f"unknown hook {caller.name}.{did_you_mean(caller.name, specs)}")
    info.hooks = sorted(c.name for c in callers)
    others = [p for p in pm.get_plugins() if p is not plugin]
    for caller in callers:
        kind = KIND_OF_HOOK.get(caller.name)
        if kind is None or caller.spec is None:
            continue
        arguments = registration_arguments(kind, info)
        missing = [a for a in caller.spec.argnames if a not in arguments]
        if missing:  # a core bug, caught by tests/core/test_plugins.py
            raise RuntimeError(f"{caller.name}: the core supplies no value for spec parameter(s) {missing}")
        pm.subset_hook_caller(caller.name, remove_plugins=others)(
            **{a: arguments[a] for a in caller.spec.argnames})


def _distribution_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is not None:
        return dist.metadata["Name"], dist.version
    return "?", "?"


def load_plugins(*, strict: bool | None = None, require: Iterable[str] = (),
                 extra: Iterable[ModuleType | tuple[str, ModuleType]] = (), entry_points: bool = True) -> Any:
    """Build a fresh :class:`~retrain.plugins.Registry`: built-ins, then ``retrain`` entry points,
    then ``extra`` modules (in-process plugins, e.g. for tests).

    A plugin that fails costs one :class:`PluginLoadWarning` (and a failed row) unless ``strict``
    (default: ``RETRAIN_STRICT_PLUGINS=1``) or it is in ``require`` (plugin or package name):
    then it raises :class:`PluginError` chaining the original exception. A name registered twice
    keeps the first registration (built-ins cannot be replaced silently) and warns.
    """
    from retrain import __version__
    from retrain.plugins.registry import Registry

    if strict is None:
        strict = os.environ.get("RETRAIN_STRICT_PLUGINS", "") not in ("", "0")
    require = set(require)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    plugins: dict[str, PluginInfo] = {}

    def add(info: PluginInfo, load: Callable[[], object]) -> None:
        plugins[info.name] = info
        plugin: object = None
        try:
            plugin = load()
            info.file = getattr(plugin, "__file__", "") or ""
            info.module = getattr(plugin, "__name__", info.module)
            pm.register(plugin, name=info.name)
            _call_registration_hooks(pm, info, plugin)
        except Exception as e:  # a broken plugin must not take the CLI down
            info.error = f"{type(e).__name__}: {e}".replace("\n", " ")
            info.exception = e
            info.components = []
            if plugin is not None and pm.is_registered(plugin):
                pm.unregister(plugin)
            if strict or info.name in require or info.package in require:
                why = "RETRAIN_STRICT_PLUGINS=1" if strict else "it is listed in [plugins] require"
                raise PluginError(f"plugin {info.label} failed to load ({why}): {info.error}") from e
            warnings.warn(f"skipped plugin {info.label}: {info.error}. "
                          f"See `retrain plugins show {info.name}`.", PluginLoadWarning, stacklevel=3)

    for modname in BUILTIN_MODULES:
        short = "builtin." + modname.split(".")[1]
        add(PluginInfo(short, "retrain-core", __version__, modname, builtin=True),
            lambda m=modname: importlib.import_module(m))
    if entry_points:
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in plugins:
                continue
            package, version = _distribution_of(ep)
            add(PluginInfo(ep.name, package, version, ep.value), ep.load)
    for item in extra:
        name, module = item if isinstance(item, tuple) else (item.__name__.rsplit(".", 1)[-1], item)
        add(PluginInfo(name, "(in-process)", "", module.__name__), lambda m=module: m)

    missing = require - {p.name for p in plugins.values()} - {p.package for p in plugins.values()}
    if missing:
        names = ", ".join(sorted(missing))
        raise PluginError(f"[plugins] require lists {names}, which is not installed. "
                          f"Install it (pip install {' '.join(sorted(missing))}) or remove it from require.")
    conflicts: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for info in plugins.values():
        for c in info.components:
            first = seen.setdefault((c.kind, c.name), info.name)
            if first != info.name:
                conflicts.append(f'plugin "{info.name}" registers {KINDS[c.kind].label} "{c.name}", '
                                 f'already provided by "{first}"; the first one is used')
    for text in conflicts:
        warnings.warn(text, PluginLoadWarning, stacklevel=2)
    return Registry(pm, plugins, strict=strict, conflicts=conflicts)
