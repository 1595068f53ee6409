"""The plugin manager: entry-point discovery, the component registry, selection and options.

``load_plugins()`` builds a fresh :class:`Registry` (never global). Built-ins register through
the same hooks as third-party plugins (as ``builtin.<module>``). Only this module and
``hookspecs`` import pluggy.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from retrain import hookspecs
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

#: Modules of retrain-core that register built-in components. Each implements hooks.
BUILTIN_MODULES: list[str] = [
    # each area adds its registration module here: "retrain.<area>.plugin" (shows as builtin.<area>)
    "retrain.rewards.plugin",
    "retrain.advantages.plugin",
]

#: Names that first-party plugins provide: (kind, name) -> distribution to install.
FIRST_PARTY: dict[tuple[str, str], str] = {
    ("engine", "vllm"): "retrain-vllm",
    ("environment", "verifiers"): "retrain-verifiers",
    ("transform", "gtpo_hicra"): "retrain-hicra",
    ("planning_detector", "mined-grams"): "retrain-hicra",
    ("command", "hicra"): "retrain-hicra",
}

#: Factory parameters that are injected at build time, not options.
INJECTED = {"ctx"}


@dataclass
class Option:
    name: str
    type: str
    default: Any  # inspect.Parameter.empty when required
    required: bool


@dataclass
class Component:
    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str  # the plugin that registered it

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.factory) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @property
    def config_section(self) -> str:
        """The config section whose keys are this component's options."""
        return getattr(self.factory, "config_section", self.name)

    def options(self) -> list[Option]:
        return factory_options(self.factory)


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

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "package": self.package, "version": self.version, "module": self.module,
            "file": self.file, "builtin": self.builtin, "status": "ok" if self.ok else "failed",
            "error": self.error or None, "hooks": self.hooks,
            "components": [{"kind": c.kind, "name": c.name, "summary": c.summary,
                            "options": [{"name": o.name, "type": o.type,
                                         "default": None if o.required else _jsonable(o.default),
                                         "required": o.required} for o in c.options()]}
                           for c in self.components],
        }


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else repr(value)


def factory_options(factory: Callable[..., Any]) -> list[Option]:
    """The options of a factory: its keyword parameters (minus injected ones like ``ctx``)."""
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    out = []
    for p in sig.parameters.values():
        if p.name in ("self", *INJECTED) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = p.annotation
        tname = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
        out.append(Option(p.name, "" if ann is p.empty else str(tname), p.default, p.default is p.empty))
    return out


def _accepts_ctx(factory: Callable[..., Any]) -> bool:
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    try:
        return "ctx" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


class Registry:
    """Typed facade over the plugin manager: the only way core reaches hooks."""

    def __init__(self, pm: pluggy.PluginManager, plugins: dict[str, PluginInfo], strict: bool = False) -> None:
        self.pm = pm
        self.plugins = plugins
        self.strict = strict
        self.components: dict[str, dict[str, Component]] = {k: {} for k in KINDS}
        for info in plugins.values():
            for c in info.components:
                self.components[c.kind][c.name] = c

    # -- lookup ---------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def failed(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if not p.ok]

    def get(self, kind: str, name: str, where: str = "") -> Component:
        """The component ``name`` of ``kind``, or a dotted path ``module.attr`` / ``module:attr``.

        ``where`` names the config key for error messages (``retrain.toml [algorithm] transform_mode``).
        """
        if name in self.components[kind]:
            return self.components[kind][name]
        if "." in name or ":" in name:
            return Component(kind, name, load_dotted(name, where), plugin="dotted path")
        raise PluginError(self._missing_message(kind, name, where))

    def _missing_message(self, kind: str, name: str, where: str) -> str:
        label = KIND_LABELS[kind]
        prefix = f'{where} = "{name}"' if where else f'{label} "{name}"'
        msg = f"{prefix}: no such {label}."
        hint = did_you_mean(name, [*self.components[kind], *(n for (k, n) in FIRST_PARTY if k == kind)])
        msg += hint
        package = FIRST_PARTY.get((kind, name))
        if not package and hint:
            guess = hint.split('"')[1]
            package = FIRST_PARTY.get((kind, guess)) if guess not in self.components[kind] else None
        failed = [p for p in self.failed()]
        owner = next((p for p in failed if p.package == package), None) if package else None
        if owner is not None:
            msg += f" (plugin \"{owner.name}\" ({owner.package}) failed to load: {owner.error})"
        elif package:
            msg += f" (provided by {package}: pip install {package})"
        elif failed:
            msg += (" It may come from a plugin that failed to load: "
                    + ", ".join(f'"{p.name}" ({p.error})' for p in failed) + ".")
        else:
            avail = ", ".join(self.names(kind)) or "none installed"
            msg += f" Available: {avail}; or a dotted path module.function."
        return msg

    def build(self, kind: str, name: str, *, where: str = "", ctx: Any = None,
              options: dict[str, Any] | None = None, section_label: str = "") -> Any:
        """Select and instantiate a component with validated options.

        ``options`` default to the config section named by the component
        (``factory.config_section``, else its name), when ``ctx`` carries a config.
        """
        comp = self.get(kind, name, where)
        if options is None and ctx is not None and getattr(ctx, "config", None) is not None:
            options = ctx.config.section(comp.config_section)
            section_label = section_label or f"{ctx.config.source} [{comp.config_section}]"
        options = dict(options or {})
        accepted = {o.name for o in comp.options()}
        core_section = ctx is not None and comp.config_section in _core_sections()
        if core_section:  # typed core sections are already validated; pass only what the factory takes
            options = {k: v for k, v in options.items() if k in accepted}
        for key in options:
            if key not in accepted:
                hint = did_you_mean(key, accepted).replace('"', "")
                raise PluginError(f"{section_label or comp.name}: unknown option {key} for {KIND_LABELS[kind]} "
                                  f'"{comp.name}".{hint} Accepted: {", ".join(sorted(accepted)) or "none"}.')
        missing = [o.name for o in comp.options() if o.required and o.name not in options]
        if missing:
            raise PluginError(f"{section_label or comp.name}: {KIND_LABELS[kind]} \"{comp.name}\" needs "
                              f"option(s) {', '.join(missing)}.")
        if _accepts_ctx(comp.factory):
            options["ctx"] = ctx
        return comp.factory(**options)

    def plugin_sections(self) -> set[str]:
        """Config section names that installed components accept (besides the core ones)."""
        names = {p.name for p in self.plugins.values()}
        for kind in self.components.values():
            for c in kind.values():
                names.add(c.name)
                names.add(c.config_section)
        return names - _core_sections()

    def commands(self) -> dict[str, Component]:
        return dict(self.components["command"])


KIND_LABELS = {
    "backend": "backend", "engine": "engine", "reward": "reward", "advantage": "advantage mode",
    "transform": "transform", "environment": "environment", "planning_detector": "planning detector",
    "logger": "logger", "command": "command",
}


def _core_sections() -> set[str]:
    from retrain.config.schema import SECTIONS

    return set(SECTIONS)


def load_dotted(path: str, where: str = "") -> Any:
    """Import ``module.attr`` or ``module:attr``; the working directory is importable."""
    modname, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    label = f'{where} = "{path}"' if where else f'"{path}"'
    if not modname or not attr:
        raise PluginError(f"{label}: expected a dotted path module.function.")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name and modname.startswith(e.name):
            raise PluginError(f"{label}: cannot import module {modname!r} (looked in the working directory "
                              f"{cwd} and site-packages). Check the name or the file location.") from e
        raise PluginError(f"{label}: importing {modname!r} failed: {type(e).__name__}: {e}") from e
    except Exception as e:
        raise PluginError(f"{label}: importing {modname!r} failed: {type(e).__name__}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise PluginError(f"{label}: module {modname!r} has no attribute {attr!r}."
                          + did_you_mean(attr, names)) from None


def _distribution_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is not None:
        return dist.metadata["Name"], dist.version
    return "?", "?"


def _collect(pm: pluggy.PluginManager, info: PluginInfo, module: ModuleType) -> None:
    """Call the plugin's registration hooks and record what it provides."""
    info.hooks = sorted(name for name in KINDS.values() if callable(getattr(module, name, None)))
    for kind, hook in KINDS.items():
        impl = getattr(module, hook, None)
        if not callable(impl):
            continue

        def register(name: str, factory: Callable[..., Any], _kind: str = kind) -> None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"register() needs a non-empty string name, got {name!r}")
            if not callable(factory):
                raise TypeError(f"register({name!r}, ...) needs a callable factory, got {type(factory).__name__}")
            info.components.append(Component(_kind, name, factory, info.name))

        impl(register=register)


def load_plugins(*, strict: bool | None = None, require: Iterable[str] = (),
                 extra: Iterable[ModuleType | tuple[str, ModuleType]] = (), entry_points: bool = True) -> Registry:
    """Build a fresh registry: built-ins, then ``retrain`` entry points, then ``extra`` modules
    (in-process plugins, e.g. for tests).

    A plugin that fails costs one warning (and a failed row) unless ``strict``
    (``RETRAIN_STRICT_PLUGINS=1``) or it is in ``require``: then it raises :class:`PluginError`.
    """
    if strict is None:
        strict = os.environ.get("RETRAIN_STRICT_PLUGINS", "") not in ("", "0")
    require = set(require)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    plugins: dict[str, PluginInfo] = {}
    from retrain import __version__

    def add(info: PluginInfo, load: Callable[[], ModuleType]) -> None:
        plugins[info.name] = info
        try:
            module = load()
            info.file = getattr(module, "__file__", "") or ""
            info.module = module.__name__
            pm.register(module, name=info.name)
            _collect(pm, info, module)
        except Exception as e:  # a broken plugin must not take the CLI down
            info.error = f"{type(e).__name__}: {e}"
            info.exception = e
            info.components = []
            if pm.is_registered(module if "module" in locals() else None):  # pragma: no cover
                pm.unregister(module)
            if strict or info.name in require or info.package in require:
                why = "RETRAIN_STRICT_PLUGINS=1" if strict else "[plugins] require"
                raise PluginError(f'plugin "{info.name}" ({info.package} {info.version}) failed to load and is '
                                  f"required ({why}): {info.error}") from e
            warnings.warn(f'skipped plugin "{info.name}" ({info.package} {info.version}): {info.error}. '
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
        raise PluginError(f"[plugins] require lists {', '.join(sorted(missing))}, which is not installed. "
                          f"Install it (pip install {' '.join(sorted(missing))}) or remove it from require.")
    return Registry(pm, plugins, strict=strict)


class PluginLoadWarning(UserWarning):
    """A plugin failed to import and was skipped."""
