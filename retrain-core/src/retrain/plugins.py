"""The plugin manager: entry-point discovery, the component registry, selection and options.

``load_plugins()`` builds a fresh :class:`Registry` (never global). Built-ins register through
the same hooks as third-party plugins (as ``builtin.<area>``). Only this module and
``hookspecs`` import pluggy.

Failure policy (docs/plugins.md, "When a plugin fails"): a plugin that fails to import, or whose registration hook
raises, costs one :class:`PluginLoadWarning` and a "failed" row; it is a :class:`PluginError`
under ``RETRAIN_STRICT_PLUGINS=1``, when listed in ``[plugins] require``, or when a run selects
a name that only it could provide (``Registry.get`` names the failed plugin and chains its error).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from retrain import hookspecs
from retrain.components import (
    INJECTED,
    Component,
    Option,
    accepts_ctx,
    check_option_value,
    factory_options,
    jsonable,
    load_dotted,
)
from retrain.errors import PluginError, did_you_mean

ENTRY_POINT_GROUP = "retrain"

#: kind -> registration hook name
KINDS: dict[str, str] = {
    "backend": "retrain_register_backends",
    "engine": "retrain_register_engines",
    "reward": "retrain_register_rewards",
    "advantage": "retrain_register_advantages",
    "transform": "retrain_register_transforms",
    "environment": "retrain_register_environments",
    "planning_detector": "retrain_register_planning_detectors",
    "logger": "retrain_register_loggers",
    "command": "retrain_register_commands",
}

#: How each kind reads in messages ("no such advantage mode").
KIND_LABELS = {
    "backend": "backend", "engine": "engine", "reward": "reward", "advantage": "advantage mode",
    "transform": "transform", "environment": "environment", "planning_detector": "planning detector",
    "logger": "logger", "command": "command",
}

#: Modules of retrain-core that register built-in components. Each implements hooks.
BUILTIN_MODULES: list[str] = [
    # each area adds its registration module here: "retrain.<area>.plugin" (shows as builtin.<area>)
    "retrain.rewards.plugin",
    "retrain.environments.plugin",
    "retrain.advantages.plugin",
    "retrain.backends.plugin",
    "retrain.engines.plugin",
    "retrain.loggers.plugin",
    "retrain.campaign.plugin",
    "retrain.bench.plugin",
    "retrain.evaluation",
]

#: Names that first-party plugins provide: (kind, name) -> distribution to install.
FIRST_PARTY: dict[tuple[str, str], str] = {
    ("engine", "vllm"): "retrain-vllm",
    ("environment", "verifiers"): "retrain-verifiers",
    ("transform", "gtpo_hicra"): "retrain-hicra",
    ("planning_detector", "mined-grams"): "retrain-hicra",
    ("command", "hicra"): "retrain-hicra",
}

#: Config keys that select a component by name: (section, key, kind).
SELECTORS: list[tuple[str, str, str]] = [
    ("backend", "backend", "backend"),
    ("inference", "engine", "engine"),
    ("reward", "type", "reward"),
    ("algorithm", "advantage_mode", "advantage"),
    ("algorithm", "transform_mode", "transform"),
    ("planning", "detector", "planning_detector"),
    ("data", "source", "environment"),
    ("environment", "provider", "environment"),
    ("logging", "loggers", "logger"),
]

__all__ = [
    "BUILTIN_MODULES", "ENTRY_POINT_GROUP", "FIRST_PARTY", "INJECTED", "KINDS", "KIND_LABELS", "SELECTORS",
    "Component", "Option", "PluginInfo", "PluginLoadWarning", "Registry", "factory_options", "load_dotted",
    "load_plugins", "normalize_kind",
]


class PluginLoadWarning(UserWarning):
    """A plugin failed to load and was skipped (the CLI prints it as one ``warning:`` line)."""


@dataclass
class PluginInfo:
    name: str
    package: str
    version: str
    module: str
    file: str = ""
    builtin: bool = False
    error: str = ""  # "" = loaded
    exception: BaseException | None = None
    hooks: list[str] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def label(self) -> str:
        """``"name" (package version)`` for messages."""
        return f'"{self.name}" ({self.package} {self.version})'.replace(" )", ")")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "package": self.package, "version": self.version, "module": self.module,
            "file": self.file, "builtin": self.builtin, "status": "ok" if self.ok else "failed",
            "error": self.error or None, "hooks": self.hooks,
            "components": [{"kind": c.kind, "name": c.name, "summary": c.summary,
                            "config_section": c.config_section,
                            "options": [{"name": o.name, "type": o.type,
                                         "default": None if o.required else jsonable(o.default),
                                         "required": o.required} for o in c.options()]}
                           for c in self.components],
        }


def normalize_kind(text: str) -> str:
    """``advantages`` / ``planning-detector`` / ``planning detector`` -> a key of KINDS, or PluginError."""
    key = text.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in KINDS and key.endswith("s") and key[:-1] in KINDS:
        key = key[:-1]
    if key not in KINDS:
        raise PluginError(f'unknown component kind "{text}".{did_you_mean(key, KINDS)} '
                          f"Kinds: {', '.join(KINDS)}.")
    return key


class Registry:
    """Typed facade over the plugin manager: the only way core reaches hooks and components."""

    def __init__(self, pm: pluggy.PluginManager, plugins: dict[str, PluginInfo], strict: bool = False,
                 conflicts: list[str] | None = None) -> None:
        self.pm = pm
        self.plugins = plugins
        self.strict = strict
        self.conflicts = conflicts or []  # "plugin X registers engine "y", already provided by Z"
        #: Folders searched for dotted-path modules besides the working directory (the CLI adds
        #: the config file's folder, so ``my_transforms.py`` next to the config is found).
        self.search_dirs: list[Path] = []
        self.components: dict[str, dict[str, Component]] = {k: {} for k in KINDS}
        for info in plugins.values():
            for c in info.components:
                self.components[c.kind].setdefault(c.name, c)

    # -- lookup ---------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def failed(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if not p.ok]

    def get(self, kind: str, name: str, where: str = "") -> Component:
        """The component ``name`` of ``kind``, or a dotted path (``module.attr``, ``module:attr``,
        ``./file.py:attr``). ``where`` names the config key for error messages
        (``retrain.toml [algorithm] transform_mode``)."""
        if name in self.components[kind]:
            return self.components[kind][name]
        if "." in name or ":" in name or "/" in name:
            factory = load_dotted(name, where, self.search_dirs)
            return Component(kind, name, factory, plugin="dotted path")
        message, cause = self._missing(kind, name, where)
        raise PluginError(message) from cause

    def _missing(self, kind: str, name: str, where: str) -> tuple[str, BaseException | None]:
        label = KIND_LABELS[kind]
        prefix = f'{where} = "{name}"' if where else f'{label} "{name}"'
        first_party = [n for (k, n) in FIRST_PARTY if k == kind]
        package = FIRST_PARTY.get((kind, name))
        hint = "" if package else did_you_mean(name, sorted({*self.components[kind], *first_party}))
        msg = f"{prefix}: no such {label}.{hint}"
        if not package and hint:
            guess = hint.split('"')[1]
            package = FIRST_PARTY.get((kind, guess)) if guess not in self.components[kind] else None
        failed = self.failed()
        owner = next((p for p in failed if p.package == package), None) if package else None
        if owner is not None:
            return msg + f" (plugin {owner.label} failed to load: {owner.error})", owner.exception
        if package:
            return msg + f" (provided by {package}: pip install {package})", None
        if failed:
            who = ", ".join(f"{p.label}: {p.error}" for p in failed)
            return (msg + f" It may come from a plugin that failed to load: {who}. "
                    f"See `retrain plugins show {failed[0].name}`."), failed[0].exception
        avail = ", ".join(self.names(kind)) or "none installed"
        return msg + f" Available: {avail}; or a dotted path module.function.", None

    def build(self, kind: str, name: str, *, where: str = "", ctx: Any = None,
              options: dict[str, Any] | None = None, section_label: str = "") -> Any:
        """Select and instantiate a component with validated options.

        ``options`` default to the config section named by the component
        (``factory.config_section``, else its name) when ``ctx`` carries a config. Core sections
        are validated by the schema already, so only the keys the factory accepts are passed.
        """
        comp = self.get(kind, name, where)
        config = getattr(ctx, "config", None) if ctx is not None else None
        if options is None and config is not None:
            options = config.section(comp.config_section)
            section_label = section_label or f"{config.source} [{comp.config_section}]"
        options = dict(options or {})
        accepted = {o.name for o in comp.options()}
        if config is not None and comp.config_section in _core_sections():
            options = {k: v for k, v in options.items() if k in accepted}
        self.check_options(comp, options, section_label or f'{KIND_LABELS[kind]} "{comp.name}"')
        missing = [o.name for o in comp.options() if o.required and o.name not in options]
        if missing:
            raise PluginError(f"{section_label or comp.name}: {KIND_LABELS[kind]} \"{comp.name}\" needs "
                              f"option(s) {', '.join(missing)}.")
        if accepts_ctx(comp.factory):
            options["ctx"] = ctx
        return comp.factory(**options)

    def check_options(self, comp: Component, options: dict[str, Any], label: str) -> None:
        """Unknown option -> error listing the accepted ones; wrong type -> error naming the type."""
        by_name = {o.name: o for o in comp.options()}
        for key, value in options.items():
            if key not in by_name:
                hint = did_you_mean(key, by_name).replace('"', "")
                raise PluginError(f"{label}: unknown option {key} for {KIND_LABELS[comp.kind]} "
                                  f'"{comp.name}".{hint} Accepted: {", ".join(sorted(by_name)) or "none"}.')
            problem = check_option_value(by_name[key], value)
            if problem:
                raise PluginError(f"{label}: {key} {problem}")

    def check_config(self, cfg: Any) -> None:
        """Pre-flight: every name the config selects resolves, and plugin sections' options are
        valid for the components that read them. Raises :class:`PluginError` on the first problem."""
        for section, key, kind in SELECTORS:
            if not self._selector_active(cfg, section, key):
                continue
            value = getattr(getattr(cfg, section), key)
            for name in value if isinstance(value, list) else [value]:
                if not name or (kind == "transform" and name == "none" and "none" not in self.components[kind]):
                    continue
                self.get(kind, name, where=f"{cfg.source} [{section}] {key}")
        core = _core_sections()
        for section, body in cfg.plugin_sections.items():
            readers = [c for kind, comps in self.components.items() if kind != "command"
                       for c in comps.values() if c.config_section == section and section not in core]
            if not readers or not body:
                continue
            merged = Component(readers[0].kind, readers[0].name, readers[0].factory, readers[0].plugin)
            if len(readers) == 1:
                self.check_options(merged, body, f"{cfg.source} [{section}]")
                continue
            accepted = {o.name: o for c in readers for o in c.options()}  # several components share it
            for key, value in body.items():
                if key not in accepted:
                    hint = did_you_mean(key, accepted).replace('"', "")
                    raise PluginError(f"{cfg.source}: unknown key [{section}] {key}.{hint} "
                                      f"Accepted: {', '.join(sorted(accepted))}.")
                problem = check_option_value(accepted[key], value)
                if problem:
                    raise PluginError(f"{cfg.source} [{section}]: {key} {problem}")

    @staticmethod
    def _selector_active(cfg: Any, section: str, key: str) -> bool:
        if section == "planning":  # the detector only matters when a transform is selected
            return getattr(cfg.algorithm, "transform_mode", "none") not in ("", "none")
        if section == "data":  # an [environment] provider replaces [data]
            return not getattr(cfg.environment, "provider", "")
        return True

    def plugin_sections(self) -> set[str]:
        """Config section names that installed components accept (besides the core ones)."""
        names = {p.name for p in self.plugins.values() if p.ok and not p.builtin}
        for kind in self.components.values():
            for c in kind.values():
                names.add(c.name)
                names.add(c.config_section)
        return names - _core_sections()

    def section_hints(self) -> dict[str, str]:
        """Why a section is unknown: its plugin failed to load, or its first-party package is missing."""
        hints: dict[str, str] = {}
        installed = {p.package for p in self.plugins.values()}
        for package in sorted(set(FIRST_PARTY.values()) - installed):
            hints[package.removeprefix("retrain-")] = f"it belongs to {package}, which is not installed: " \
                                                      f"pip install {package}"
        for p in self.failed():
            msg = f"it belongs to plugin {p.label}, which failed to load: {p.error}"
            hints[p.name] = msg
            hints[p.package.removeprefix("retrain-")] = msg
        return hints

    def commands(self) -> dict[str, Component]:
        return dict(self.components["command"])

    def to_json(self) -> list[dict[str, Any]]:
        return [p.to_json() for p in self.plugins.values()]


def _core_sections() -> set[str]:
    from retrain.config.schema import SECTIONS

    return set(SECTIONS)


def _distribution_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is not None:
        return dist.metadata["Name"], dist.version
    return "?", "?"


def _call_registration_hooks(pm: pluggy.PluginManager, info: PluginInfo, plugin: object) -> None:
    """Validate the plugin's hooks against the specs and call its registration hookimpls."""
    callers = pm.get_hookcallers(plugin) or []
    specs = {name for name in dir(hookspecs) if name.startswith("retrain_")}
    for caller in callers:
        if caller.spec is None:  # a typo in a hook name would otherwise be ignored silently
            raise PluginError(f"unknown hook {caller.name}.{did_you_mean(caller.name, specs)}")
    info.hooks = sorted(c.name for c in callers)
    hook_kind = {hook: kind for kind, hook in KINDS.items()}
    for caller in callers:
        kind = hook_kind.get(caller.name)
        if kind is None:
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue

            def register(name: str, factory: Callable[..., Any], _kind: str = kind) -> None:
                if not isinstance(name, str) or not name:
                    raise TypeError(f"register() needs a non-empty string name, got {name!r}")
                if not callable(factory):
                    raise TypeError(f"register({name!r}, ...) needs a callable factory, "
                                    f"got {type(factory).__name__}")
                info.components.append(Component(_kind, name, factory, info.name))

            impl.function(*[{"register": register}[a] for a in impl.argnames])


def load_plugins(*, strict: bool | None = None, require: Iterable[str] = (),
                 extra: Iterable[ModuleType | tuple[str, ModuleType]] = (), entry_points: bool = True) -> Registry:
    """Build a fresh registry: built-ins, then ``retrain`` entry points, then ``extra`` modules
    (in-process plugins, e.g. for tests).

    A plugin that fails costs one :class:`PluginLoadWarning` (and a failed row) unless ``strict``
    (default: ``RETRAIN_STRICT_PLUGINS=1``) or it is in ``require`` (plugin or package name):
    then it raises :class:`PluginError` chaining the original exception. A name registered twice
    keeps the first registration (built-ins cannot be replaced silently) and warns.
    """
    if strict is None:
        strict = os.environ.get("RETRAIN_STRICT_PLUGINS", "") not in ("", "0")
    require = set(require)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    plugins: dict[str, PluginInfo] = {}
    from retrain import __version__

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
                conflicts.append(f'plugin "{info.name}" registers {KIND_LABELS[c.kind]} "{c.name}", '
                                 f'already provided by "{first}"; the first one is used')
    for text in conflicts:
        warnings.warn(text, PluginLoadWarning, stacklevel=2)
    return Registry(pm, plugins, strict=strict, conflicts=conflicts)
