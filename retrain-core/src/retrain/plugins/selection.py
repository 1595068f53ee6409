"""Selection: the pre-flight check that every name a config selects resolves, and that plugin
sections hold options their components accept (before any model loads)."""

from __future__ import annotations

from typing import Any, Protocol

from retrain.components import Component, check_option_value
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
    core = core_sections()
    for section, body in cfg.plugin_sections.items():
        readers = [c for kind, comps in registry.components.items() if kind != "command"
                   for c in comps.values() if c.config_section == section and section not in core]
        if not readers or not body:
            continue
        if len(readers) == 1:
            registry.check_options(readers[0], body, f"{cfg.source} [{section}]")
            continue
        _check_shared_section(readers, section, body, cfg.source)


def _check_shared_section(readers: list[Component], section: str, body: dict[str, Any], source: str) -> None:
    """A section several components read: each key must be an option of one of them."""
    accepted = {o.name: o for c in readers for o in c.options()}
    for key, value in body.items():
        if key not in accepted:
            hint = did_you_mean(key, accepted).replace('"', "")
            raise PluginError(f"{source}: unknown key [{section}] {key}.{hint} "
                              f"Accepted: {', '.join(sorted(accepted))}.")
        problem = check_option_value(accepted[key], value)
        if problem:
            raise PluginError(f"{source} [{section}]: {key} {problem}")
