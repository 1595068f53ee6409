"""Built-in rewards (``match``, ``math``, ``judge``, ``custom``, ``combo``) and ``build_reward``.

Use :func:`build_reward` to turn ``[reward] type`` into a Reward (a registered name or a dotted
path; a plain scoring function ``score(response, reference)`` runs through the ``custom`` reward,
by the registry's rule in retrain/plugins/kinds.py), with combo terms' option overrides.
"""

from __future__ import annotations

from typing import Any

from retrain.errors import ConfigError, did_you_mean

__all__ = ["build_reward"]


def build_reward(ctx: Any, name: str | None = None, overrides: dict[str, Any] | None = None,
                 where: str = "[reward] type") -> Any:
    """The reward named ``name`` (default ``[reward] type``) with the options of its config section
    (``[reward]``, or the plugin reward's own ``config_section``, by default its name), ``overrides``
    on top (used by combo terms). ``ctx`` carries ``config`` and ``registry``."""
    config = getattr(ctx, "config", None)
    registry = getattr(ctx, "registry", None)
    if registry is None:
        from retrain.plugins import load_plugins

        registry = load_plugins()
    section: dict[str, Any] = config.section("reward") if config is not None else {}
    name = name or section.get("type") or "math"
    source = f"{config.source} " if config is not None else ""
    component = registry.get("reward", name, f"{source}{where}")
    accepted = {o.name for o in component.options()}
    for key in overrides or {}:
        if key not in accepted:
            raise ConfigError(f'{source}{where.rsplit(" ", 1)[0]}: unknown option {key} for reward "{name}".'
                              + did_you_mean(key, accepted) + f' Accepted: {", ".join(sorted(accepted)) or "none"}.')
    own = component.config_section  # "reward" for the built-ins; a plugin's reward may read its own section
    if config is not None and own != "reward":
        section = config.section(own)
    options = {k: v for k, v in {**section, **(overrides or {})}.items() if k in accepted}
    return registry.build("reward", name, where=f"{source}{where}", ctx=ctx, options=options,
                          section_label=f"{source}[{own}]")
