"""Selection: the pre-flight check that every name a config selects resolves, and that plugin
sections hold options their components accept (before any model loads)."""

from __future__ import annotations

from typing import Any, Protocol

from retrain.components import Component, Option, check_option_value
from retrain.errors import PluginError, did_you_mean
from retrain.plugins.kinds import KINDS


class Selectable(Protocol):
    """What the check reads of ``retrain.plugins.Registry`` (which calls it: no import back)."""

    components: dict[str, dict[str, Component]]

    def get(self, kind: str, name: str, where: str = "") -> Component: ...


def core_sections() -> set[str]:
    from retrain.config.schema import SECTIONS

    return set(SECTIONS)


def selector_active(cfg: Any, section: str, key: str) -> bool:
    """Whether a selecting key matters for this config."""
    if section == "planning":  # the detector only matters when a transform is selected
        return getattr(cfg.algorithm, "transform_mode", "none") not in ("", "none")
    if section == "data":  # an [environment] provider replaces [data]
        return not getattr(cfg.environment, "provider", "")
    return True


def check_config(registry: Selectable, cfg: Any) -> None:
    """Every name the config selects resolves, and plugin sections' options are valid for the
    components that read them. Raises :class:`PluginError` on the first problem."""
    for kind in KINDS.values():
        for section, key in kind.selectors:
            if not selector_active(cfg, section, key):
                continue
            value = getattr(getattr(cfg, section), key)
            for name in value if isinstance(value, list) else [value]:
                if not name or (kind.name == "transform" and name == "none"
                                and "none" not in registry.components[kind.name]):
                    continue
                registry.get(kind.name, name, where=f"{cfg.source} [{section}] {key}")
    provider = cfg.environment.provider
    if provider:
        from retrain.config import check_provider_keys

        # `retrain config` says so too, from what the class declares (build_parts checks the built environment)
        check_provider_keys(cfg, registry.get("environment", provider).factory)
    for section, body in cfg.plugin_sections.items():
        readers = section_readers(registry, section)
        if readers and body:
            check_options(readers, body, f"{cfg.source} [{section}]")


def section_readers(registry: Selectable, section: str) -> list[Component]:
    """The components whose options a plugin section holds (none for a core section: the schema
    checks those), by kind label and name."""
    if section in core_sections():
        return []
    readers = [c for kind, comps in registry.components.items() if kind != "command"
               for c in comps.values() if c.config_section == section]
    return sorted(readers, key=lambda c: (KINDS[c.kind].label, c.name))


def check_options(readers: list[Component], options: dict[str, Any], label: str) -> None:
    """Options of a section that ``readers`` read (one component or several): an unknown one is an
    error listing the accepted ones, a wrong type an error naming the type. The one check for
    plugin options, at pre-flight (``check_config``) and when a component is built."""
    accepted: dict[str, Option] = {}
    for comp in readers:
        for option in comp.options():
            accepted.setdefault(option.name, option)
    for key, value in options.items():
        if key not in accepted:
            hint = did_you_mean(key, accepted).replace('"', "")
            who = " and ".join(f'{KINDS[c.kind].label} "{c.name}"' for c in readers)
            raise PluginError(f"{label}: unknown option {key} for {who}.{hint} "
                              f"Accepted: {', '.join(sorted(accepted)) or 'none'}.")
        problem = check_option_value(accepted[key], value)
        if problem:
            raise PluginError(f"{label}: {key} {problem}")
