"""The registry: components by kind and name (or dotted path), built with validated options."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.components import Component, accepts_ctx, load_dotted
from retrain.errors import PluginError, did_you_mean
from retrain.plugins.info import PluginInfo
from retrain.plugins.kinds import KINDS, as_factory
from retrain.plugins.selection import check_config, check_options, core_sections, section_readers

if TYPE_CHECKING:
    import pluggy


def is_dotted(name: str) -> bool:
    return "." in name or ":" in name or "/" in name


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
        ``./file.py:attr``) read by the same rule as a registered object (kinds.py).
        ``where`` names the config key for error messages (``retrain.toml [algorithm] transform_mode``)."""
        if name in self.components[kind]:
            return self.components[kind][name]
        if is_dotted(name):
            target = load_dotted(name, where, self.search_dirs)
            try:
                factory = as_factory(KINDS[kind], name, target, ref=name)
            except PluginError as e:
                raise PluginError(f'{where} = "{name}": {e}' if where else str(e)) from None
            return Component(kind, name, factory, plugin="dotted path", target=target)
        message, cause = self._missing(kind, name, where)
        raise PluginError(message) from cause

    def _missing(self, kind: str, name: str, where: str) -> tuple[str, BaseException | None]:
        spec = KINDS[kind]
        prefix = f'{where} = "{name}"' if where else f'{spec.label} "{name}"'
        package = spec.first_party.get(name)
        hint = "" if package else did_you_mean(name, sorted({*self.components[kind], *spec.first_party}))
        msg = f"{prefix}: no such {spec.label}.{hint}"
        if not package and hint:
            guess = hint.split('"')[1]
            package = spec.first_party.get(guess) if guess not in self.components[kind] else None
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

    # -- building -------------------------------------------------------------------------
    def build(self, kind: str, name: str, *, where: str = "", ctx: Any = None,
              options: dict[str, Any] | None = None, section_label: str = "") -> Any:
        """Select and instantiate a component with validated options.

        ``options`` default to the config section named by the component
        (``factory.config_section``, else its name) when ``ctx`` carries a config. Core sections
        are validated by the schema already, so only the keys the factory accepts are passed.
        """
        comp = self.get(kind, name, where)
        label = KINDS[kind].label
        config = getattr(ctx, "config", None) if ctx is not None else None
        from_config = options is None and config is not None
        if from_config:
            options = config.section(comp.config_section)
            section_label = section_label or f"{config.source} [{comp.config_section}]"
        options = dict(options or {})
        accepted = {o.name for o in comp.options()}
        if config is not None and comp.config_section in core_sections():
            options = {k: v for k, v in options.items() if k in accepted}
        # a section other components read too holds their keys as well: checked as a whole, each built with its own
        readers = section_readers(self, comp.config_section) if from_config else []
        check_options(readers if comp in readers else [comp], options, section_label or f'{label} "{comp.name}"')
        options = {k: v for k, v in options.items() if k in accepted}
        missing = [o.name for o in comp.options() if o.required and o.name not in options]
        if missing:
            raise PluginError(f"{section_label or comp.name}: {label} \"{comp.name}\" needs "
                              f"option(s) {', '.join(missing)}.")
        if accepts_ctx(comp.factory):
            options["ctx"] = ctx
        return comp.factory(**options)

    def check_config(self, cfg: Any) -> None:
        """Pre-flight of a config against the installed components (see selection.py)."""
        check_config(self, cfg)

    # -- what the config and the CLI need ----------------------------------------------------
    def plugin_sections(self) -> set[str]:
        """Config section names that installed components accept (besides the core ones)."""
        names = {p.name for p in self.plugins.values() if p.ok and not p.builtin}
        for kind in self.components.values():
            for c in kind.values():
                names.add(c.name)
                names.add(c.config_section)
        return names - core_sections()

    def section_hints(self) -> dict[str, str]:
        """Why a section is unknown: its plugin failed to load, or its first-party package is missing."""
        hints: dict[str, str] = {}
        installed = {p.package for p in self.plugins.values()}
        first_party = {pkg for k in KINDS.values() for pkg in k.first_party.values()}
        for package in sorted(first_party - installed):
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
