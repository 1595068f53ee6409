"""Campaign expansion: ``[campaign] seeds`` x ``[[campaign.conditions]]`` -> one run spec each.

A condition is a table with ``name`` (optional), ``advantage_mode``, ``transform_mode`` and any
config overrides written as ``"section.key" = value`` (or as a nested table, ``training.lr = 1e-5``
unquoted, which TOML reads as ``{training = {lr = 1e-5}}``). Every run gets its own directory
``<campaign dir>/runs/<condition>-s<seed>`` through ``logging.log_dir`` / ``logging.run_name``, so
no two runs share an adapter, checkpoint or metrics file.

Override precedence, lowest to highest: the TOML file, CLI ``--set`` overrides (applied to every
run), the condition's own keys, then what the campaign must own per run (``training.seed``, the
run directory, the wandb group and tags, and an empty ``[campaign]`` so the child is a plain run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrain.config import Config, load_config
from retrain.config.schema import SECTIONS, section_keys
from retrain.errors import ConfigError, did_you_mean

#: The 5-condition ablation run when ``[campaign] conditions`` is empty.
DEFAULT_CONDITIONS: list[dict[str, Any]] = [
    {"name": "grpo", "advantage_mode": "grpo", "transform_mode": "none"},
    {"name": "maxrl", "advantage_mode": "maxrl", "transform_mode": "none"},
    {"name": "maxrl+gtpo", "advantage_mode": "maxrl", "transform_mode": "gtpo"},
    {"name": "maxrl+gtpo_hicra", "advantage_mode": "maxrl", "transform_mode": "gtpo_hicra"},
    {"name": "maxrl+gtpo_sepa", "advantage_mode": "maxrl", "transform_mode": "gtpo_sepa"},
]

#: Keys the campaign sets on every run; a condition or --set that names them is overridden.
OWNED = ("training.seed", "logging.log_dir", "logging.run_name", "logging.wandb_group",
         "campaign.seeds", "campaign.conditions")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


@dataclass
class Condition:
    name: str
    overrides: dict[str, Any]  # "section.key" -> value (advantage_mode / transform_mode included)


@dataclass
class RunSpec:
    """One child run of a campaign."""

    name: str  # <condition>-s<seed>, also the run directory name
    condition: str
    seed: int
    run_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)  # all --set overrides of the child, in order

    @property
    def group(self) -> str:
        return self.condition


def is_campaign(config: Config) -> bool:
    """True when the config asks for a campaign (``[campaign] seeds`` or ``conditions`` set)."""
    return bool(config.campaign.seeds or config.campaign.conditions)


def campaign_dir(config: Config, config_path: str | Path) -> Path:
    """``[campaign] dir``, else ``<log_dir>/<run_name or config file stem>``."""
    if config.campaign.dir:
        return Path(config.campaign.dir)
    return Path(config.logging.log_dir) / (config.logging.run_name or Path(config_path).stem)


def parse_conditions(raw: list[dict[str, Any]], source: str) -> list[Condition]:
    """Validate ``[[campaign.conditions]]`` tables (names, keys) into :class:`Condition` s."""
    tables = raw or DEFAULT_CONDITIONS
    out: list[Condition] = []
    for i, table in enumerate(tables):
        where = f"{source} [[campaign.conditions]] #{i + 1}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table, got {type(table).__name__}.")
        overrides: dict[str, Any] = {}
        for key, value in table.items():
            if key == "name":
                continue
            if key in ("advantage_mode", "transform_mode"):
                overrides[f"algorithm.{key}"] = value
            elif isinstance(value, dict) and "." not in key:  # TOML dotted key: training.lr = 1e-5
                for sub, v in _flatten(value).items():
                    overrides[_check_key(f"{key}.{sub}", where)] = v
            else:
                overrides[_check_key(key, where)] = value
        name = table.get("name") or _default_name(overrides)
        if not isinstance(name, str) or not _SAFE_NAME.match(name):
            raise ConfigError(f"{where}: name {name!r} must be a non-empty string of letters, digits and _.+=- "
                              "(it becomes a directory and a wandb group).")
        if any(c.name == name for c in out):
            raise ConfigError(f'{where}: duplicate condition name "{name}"; give each condition a distinct name.')
        out.append(Condition(name, overrides))
    return out


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        out[f"{prefix}{k}"] = v
    return out


def _check_key(dotted: str, where: str) -> str:
    section, dot, key = dotted.partition(".")
    if not dot or not key:
        hint = did_you_mean(dotted, ["name", "advantage_mode", "transform_mode"])
        raise ConfigError(f'{where}: unknown key "{dotted}".{hint} Overrides are written "section.key" = value, '
                          'e.g. "training.lr" = 1e-5.')
    if section in SECTIONS and key not in section_keys(section):
        hint = did_you_mean(key, section_keys(section)).replace('"', "")
        raise ConfigError(f"{where}: unknown key [{section}] {key}.{hint}")
    return dotted


def _default_name(overrides: dict[str, Any]) -> str:
    adv = overrides.get("algorithm.advantage_mode", "maxrl")
    tr = overrides.get("algorithm.transform_mode", "none")
    return str(adv) if tr in ("none", "") else f"{adv}+{tr}"


def expand(config_path: str | Path, overrides: dict[str, Any] | None = None,
           config: Config | None = None) -> tuple[Path, list[RunSpec]]:
    """(campaign directory, run specs in launch order: condition-major, then seed)."""
    overrides = dict(overrides or {})
    config = config or load_config(config_path, overrides)
    cdir = campaign_dir(config, config_path)
    seeds = list(config.campaign.seeds) or [config.training.seed]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{config.source} [campaign] seeds = {seeds}: seeds repeat; each seed must be distinct.")
    conditions = parse_conditions(config.campaign.conditions, config.source)
    specs = []
    for cond in conditions:
        for seed in seeds:
            name = f"{cond.name}-s{seed}"
            child = {k: v for k, v in overrides.items() if k not in OWNED}
            child.update({k: v for k, v in cond.overrides.items() if k not in OWNED})
            child.update({
                "training.seed": seed,
                "logging.log_dir": str(cdir / "runs"),
                "logging.run_name": name,
                "logging.wandb_group": cond.name,
                "logging.wandb_tags": _tags(config.logging.wandb_tags, cond.name, seed, cdir.name),
                "campaign.seeds": [],
                "campaign.conditions": [],
            })
            specs.append(RunSpec(name, cond.name, seed, cdir / "runs" / name, child))
    return cdir, specs


def launch_order(specs: list[RunSpec]) -> list[RunSpec]:
    """Seed-major: every condition's first seed, then every condition's second, ... so that a campaign
    stopped midway (a GPU lent for a while) has the same seeds for every condition to compare."""
    seeds = list(dict.fromkeys(s.seed for s in specs))
    return sorted(specs, key=lambda s: seeds.index(s.seed))  # stable: condition order within a seed


def _tags(base: list[str], condition: str, seed: int, campaign: str) -> list[str]:
    extra = [f"condition:{condition}", f"seed:{seed}", f"campaign:{campaign}"]
    return [*base, *(t for t in extra if t not in base)]


def shadowed(overrides: dict[str, Any], specs: list[RunSpec]) -> list[str]:
    """CLI overrides that a condition or the campaign replaces (worth a warning)."""
    out = []
    for key, value in overrides.items():
        if key == "logging.wandb_tags":  # extended, not replaced
            continue
        if any(spec.overrides.get(key, value) != value for spec in specs):
            out.append(key)
    return out
