"""Plugins + config for one run, in the right order.

``[plugins] require`` must be known before plugins load, and plugin sections can only be
validated once plugins are loaded; ``load_run_config`` does both and then checks that every
name the config selects resolves. The CLI, campaigns and tests use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrain.config import Config, apply_overrides, load_config, read_toml
from retrain.plugins import Registry, load_plugins


def load_run_config(path: str | Path, overrides: dict[str, Any] | None = None, *,
                    check: bool = True) -> tuple[Config, Registry]:
    """Load plugins (honouring ``[plugins] require``), then the validated config.

    ``check`` also resolves every selected component name and validates plugin sections
    (``Registry.check_config``). The config file's folder is searched for dotted-path modules.
    """
    raw = apply_overrides(read_toml(path), dict(overrides or {}), str(path))
    require = (raw.get("plugins") or {}).get("require") if isinstance(raw.get("plugins"), dict) else None
    if not (isinstance(require, list) and all(isinstance(r, str) for r in require)):
        require = []  # a bad value is reported by the config validation below
    registry = load_plugins(require=require)
    registry.search_dirs.append(Path(path).resolve().parent)
    cfg = load_config(path, overrides, plugin_sections=registry.plugin_sections(),
                      section_hints=registry.section_hints())
    if check:
        registry.check_config(cfg)
    return cfg, registry


def is_campaign(cfg: Config) -> bool:
    """A config whose [campaign] lists seeds or conditions runs as a campaign."""
    return bool(cfg.campaign.seeds or cfg.campaign.conditions)
