"""TOML -> typed, validated configuration (docs/config.md).

``load_config(path, overrides)`` returns a :class:`Config`: one dataclass per core section
(``config.training.lr``) plus ``config.plugin_sections`` (``[vllm]``, ``[hicra]``, ...), which are
checked against the selected component's signature when plugins are known.
"""

from __future__ import annotations

import copy
import sys
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from retrain.config.schema import KEY_ALIASES, SECTIONS, section_keys, toml_key
from retrain.config.values import check_value, toml_type
from retrain.errors import ConfigError, did_you_mean
from retrain.redaction import is_secret_key, redact_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib



@dataclass
class Config:
    backend: Any
    model: Any
    algorithm: Any
    training: Any
    inference: Any
    gtpo: Any
    sepa: Any
    planning: Any
    data: Any
    reward: Any
    environment: Any
    logging: Any
    eval: Any
    backpressure: Any
    campaign: Any
    squeeze: Any
    resume: Any
    plugins: Any
    plugin_sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "<defaults>"  # the file it came from (for error messages)

    def section(self, name: str) -> dict[str, Any]:
        """A section as a plain dict with TOML key names (core or plugin)."""
        if name in SECTIONS:
            return {toml_key(k): v for k, v in asdict(getattr(self, name)).items()}
        return dict(self.plugin_sections.get(name, {}))

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        out = {name: self.section(name) for name in SECTIONS}
        out.update(copy.deepcopy(self.plugin_sections))
        return _redact(out) if redact else out

    def to_toml(self, redact: bool = True) -> str:
        return dump_toml(self.to_dict(redact))

    def replace(self, overrides: dict[str, Any]) -> Config:
        """A copy with ``{"section.key": value}`` applied (validated)."""
        data = apply_overrides(self.to_dict(redact=False), overrides, self.source)
        return config_from_dict(data, source=self.source)


def _redact(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out[k] = _redact(v)
        elif isinstance(v, str) and v and is_secret_key(k):
            out[k] = "***"
        elif isinstance(v, str):
            out[k] = redact_text(v)  # http://user:pass@host, ?api_key=...
        elif isinstance(v, list):
            out[k] = [redact_text(x) if isinstance(x, str) else x for x in v]
        else:
            out[k] = v
    return out


def config_from_dict(data: dict[str, Any], source: str = "<config>",
                     plugin_sections: set[str] | None = None,
                     section_hints: dict[str, str] | None = None, across_keys: bool = True) -> Config:
    """Validate a TOML-shaped dict.

    ``plugin_sections`` (when known, from ``Registry.plugin_sections()``) are the non-core
    section names that installed plugins accept; when it is None, unknown sections are kept for
    later checks. ``section_hints`` explain known-but-unavailable sections
    (``Registry.section_hints()``: a failed plugin, a first-party package to install).
    """
    built: dict[str, Any] = {}
    extra: dict[str, dict[str, Any]] = {}
    for name, body in data.items():
        if name not in SECTIONS:
            if plugin_sections is not None and name not in plugin_sections:
                raise ConfigError(_unknown_section(name, source, plugin_sections, section_hints or {}))
            if plugin_sections is None and did_you_mean(name, SECTIONS):  # plugins unknown: still catch typos
                raise ConfigError(_unknown_section(name, source, set(), {}))
            if not isinstance(body, dict):
                raise ConfigError(f"{source}: [{name}] must be a table, got {toml_type(body)}.")
            extra[name] = dict(body)
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: {name} must be a table [{name}], got {toml_type(body)}.")
    for name, cls in SECTIONS.items():
        body = dict(data.get(name, {}) or {})
        types = typing.get_type_hints(cls)
        valid = section_keys(name)
        kwargs: dict[str, Any] = {}
        for key, value in body.items():
            if key not in valid:
                hint = did_you_mean(key, valid).replace('"', "")
                raise ConfigError(f"{source}: unknown key [{name}] {key}."
                                  f"{hint or ' Valid keys: ' + ', '.join(valid) + '.'}")
            attr = KEY_ALIASES.get(key, key)
            meta = next(f.metadata for f in fields(cls) if f.name == attr)
            problem, coerced = check_value(value, types[attr], meta.get("bounds"))
            if problem:
                raise ConfigError(f"{source}: [{name}] {key} = {_show(value)}: {problem}")
            choices = meta.get("choices")
            if choices and coerced not in choices:
                raise ConfigError(f"{source}: [{name}] {key} = {_show(value)}: must be one of "
                                  f"{', '.join(choices)}." + did_you_mean(str(value), choices))
            kwargs[attr] = coerced
        built[name] = cls(**kwargs)
    cfg = Config(**built, plugin_sections=extra, source=source)
    if across_keys:
        _check_values(cfg)
    else:  # one --set checked alone: the other keys are not known there, only its own value is checked
        check_devices(cfg.backend.devices, f"{source}: [backend] devices")
    return cfg


def _unknown_section(name: str, source: str, plugin_sections: set[str], hints: dict[str, str]) -> str:
    if name in hints:
        return f"{source}: section [{name}] cannot be used: {hints[name]}."
    hint = did_you_mean(name, [*SECTIONS, *sorted(plugin_sections)])
    if hint:
        return f"{source}: unknown section [{name}]. Did you mean [{hint.split(chr(34))[1]}]?"
    extra = f"; plugin sections: {', '.join(f'[{s}]' for s in sorted(plugin_sections))}" if plugin_sections else ""
    return (f"{source}: unknown section [{name}]. Core sections: {', '.join(f'[{s}]' for s in SECTIONS)}"
            f"{extra}.")


def _show(value: Any) -> str:
    """A value as the user wrote it in TOML."""
    try:
        return _toml_value(value)
    except TypeError:
        return repr(value)


#: Advantage modes that compare the samples of one prompt (a group of 1 gives advantage 0).
GROUP_RELATIVE = ("grpo", "dr_grpo", "maxrl")


def _check_values(cfg: Config) -> None:
    """Checks across keys (one key's type and range are checked by values.check_value)."""
    src, t = cfg.source, cfg.training
    if t.group_size == 1 and cfg.algorithm.advantage_mode in GROUP_RELATIVE:
        raise ConfigError(f"{src}: [training] group_size = 1: advantage_mode {cfg.algorithm.advantage_mode} compares "
                          "the samples of one prompt, so with 1 every advantage is 0 and nothing trains; "
                          "use group_size >= 2.")
    _check_hf_keys(cfg)
    bp = cfg.backpressure
    if bp.min_batch > bp.max_batch:
        raise ConfigError(f"{src}: [backpressure] min_batch = {bp.min_batch} is above max_batch = {bp.max_batch}.")
    check_devices(cfg.backend.devices, f"{src}: [backend] devices")
    kind, _, rest = cfg.backend.devices.partition(":")
    processes = int(rest) if kind == "cpu" and rest.isdigit() else len(rest.split(",")) if rest else 1
    if t.max_staleness > 0 and processes > 1:
        raise ConfigError(f'{src}: [training] max_staleness = {t.max_staleness} with [backend] devices = '
                          f'"{cfg.backend.devices}" ({processes} processes): asynchronous training runs in one '
                          "process; set max_staleness = 0, or train on one device.")
    _check_sampling_device(cfg, processes)


def _check_sampling_device(cfg: Config, processes: int) -> None:
    """``[inference] device``: one device, the in-process pytorch engine, one trainer process."""
    src, inf = cfg.source, cfg.inference
    if not inf.device:
        return
    where = f'{src}: [inference] device = "{inf.device}"'
    kind, _, rest = inf.device.partition(":")
    if not (inf.device == "cpu" or (kind in ("gpu", "cuda") and (not rest or rest.isdigit()))):
        hint = "" if kind in ("cpu", "gpu", "cuda") else did_you_mean(kind, ["cpu", "gpu"])
        raise ConfigError(f"{where}: expected one device, gpu:I (or cuda:I) or cpu.{hint}")
    if inf.engine != "pytorch":
        raise ConfigError(f'{where}: only the pytorch engine samples in-process; engine "{inf.engine}" samples '
                          "where its server runs. Remove [inference] device.")
    if processes > 1:
        raise ConfigError(f'{where} with [backend] devices = "{cfg.backend.devices}" ({processes} processes): each '
                          "rank already samples from a full replica of its own; remove [inference] device.")


#: [data] keys that only source = "hf" reads, and the built-in sources that would ignore them.
HF_ONLY_KEYS = ("preset", "split", "test_split", "prompt_field", "answer_field", "answer_extract", "answer_regex",
                "filters")
IGNORING_HF_KEYS = ("synthetic", "math", "jsonl", "reasoning_gym")


def _check_hf_keys(cfg: Config) -> None:
    """[data] keys that the selected source would ignore are refused: a key of the hf source under
    another built-in source (preset = "gsm8k" with the default synthetic source would train on
    synthetic problems). Prompt keys under a provider: :func:`check_prompt_keys_unused`."""
    data = cfg.data
    if data.source not in IGNORING_HF_KEYS or cfg.environment.provider:
        return
    defaults = SECTIONS["data"]()
    for key in HF_ONLY_KEYS:
        value = getattr(data, key)
        if value != getattr(defaults, key):
            raise ConfigError(f'{cfg.source}: [data] {key} = {_show(value)} is read only by source = "hf", but '
                              f'[data] source = "{data.source}": set source = "hf", or remove {key}.')


#: [data] keys that decide how the loop renders a task's prompt (retrain.prompts.render_prompts).
PROMPT_KEYS = ("prompt_template", "system_prompt", "few_shot", "chat_template", "chat_template_kwargs")
#: [data] keys that choose the tasks; an [environment] provider supplies its own tasks.
TASK_KEYS = ("source", "path", "subjects", "levels", "name", *HF_ONLY_KEYS)


def check_provider_keys(cfg: Config, environment: Any) -> None:
    """Under an [environment] provider, a key it would ignore is refused instead, in one line:

    - [data] task keys (``TASK_KEYS``): the provider supplies its own tasks;
    - [data] prompt keys (``PROMPT_KEYS``) when it runs its own episodes (``Environment.rollout``, e.g.
      retrain-verifiers): it renders its own prompts;
    - [reward] keys when it brings its own reward (``Environment.reward``).

    A provider that does read some of these lists them in its optional ``config_keys`` member
    (``("data.path", "reward.timeout")``). ``environment`` is the built environment, or the registered
    class for the pre-flight check (which sees only what the class declares)."""
    provider = f'[environment] provider = "{cfg.environment.provider}"'
    reads = set(getattr(environment, "config_keys", ()) or ())
    ignored = [("data", key, "tasks") for key in TASK_KEYS]
    if getattr(environment, "rollout", None) is not None:  # Environment's optional members (no import: a cycle)
        ignored += [("data", key, "prompts (its tasks' messages, rendered with the tokenizer's chat template)")
                    for key in PROMPT_KEYS]
    if getattr(environment, "reward", None) is not None:
        ignored += [("reward", key, "reward") for key in SECTIONS["reward"].__dataclass_fields__]
    defaults = {section: SECTIONS[section]() for section in ("data", "reward")}
    for section, key, what in ignored:
        value = getattr(getattr(cfg, section), key)
        if f"{section}.{key}" not in reads and value != getattr(defaults[section], key):
            raise ConfigError(f"{cfg.source}: [{section}] {key} = {_show(value)} is not applied with {provider}: "
                              f"the environment supplies its own {what}; remove it, or train from [data] and "
                              "[reward] instead.")


def check_devices(devices: str, where: str) -> None:
    """auto, cpu, cpu:N, gpu, gpu:I[,J...], cuda[:I] (torch's names) or mps; anything else is an error.
    Whether the GPU exists is checked when the run starts (backends.local.resolve_device)."""
    kind, _, rest = devices.partition(":")
    ok = (devices in ("", "auto", "cpu", "gpu", "cuda", "mps") or (kind == "cpu" and rest.isdigit() and int(rest) >= 1)
          or (kind in ("gpu", "cuda") and rest and all(x.strip().isdigit() for x in rest.split(","))))
    if not ok:
        hint = did_you_mean(kind, ["auto", "cpu", "gpu"])
        raise ConfigError(f'{where} = "{devices}": unknown device. Expected auto, cpu, cpu:N (N processes), '
                          f'gpu:0 or gpu:0,1.{hint}')


def parse_value(text: str) -> Any:
    """Parse a CLI ``--set`` value as a TOML value, falling back to a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["training.lr=1e-5", ...]`` -> ``{"training.lr": 1e-05}``. Values are TOML
    (``true``, ``[1, 2]``, ``"text"``); anything that is not valid TOML is taken as a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        sec, dot, name = key.partition(".")
        if not eq or not dot or not sec or not name:
            raise ConfigError(f"--set {item}: expected section.key=value, e.g. --set training.lr=1e-5.")
        out[key] = parse_value(value.strip())
    return out


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], source: str) -> dict[str, Any]:
    """Merge ``{"section.key": value}`` (``section.key.sub`` reaches into tables) into ``data``."""
    for dotted, value in overrides.items():
        sec, _, rest = dotted.partition(".")
        if sec in data and not isinstance(data[sec], dict):
            raise ConfigError(f"--set {dotted}: [{sec}] is not a table in {source}.")
        node = data.setdefault(sec, {})
        *parents, leaf = rest.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: [{sec}] {part} is not a table.")
            node = child
        node[leaf] = value
    return data


def read_utf8(path: str | Path, label: str = "") -> str:
    """A text file's contents; a file that is not UTF-8 or cannot be read is a one-line ConfigError."""
    label = label or str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{label}: cannot read: {e.strerror or e}.") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{label}: not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); "
                          "save the file as UTF-8.") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such config file." + (" It is a directory." if p.is_dir() else
                                                              " Create one with `retrain init`."))
    try:
        return tomllib.loads(read_utf8(p))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}.") from None


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None,
                plugin_sections: set[str] | None = None,
                section_hints: dict[str, str] | None = None) -> Config:
    """Read ``path``, merge ``{"section.key": value}`` overrides (from ``--seed``, ``--set``...),
    validate. Errors in an override name the ``--set`` that caused them."""
    data = read_toml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    for dotted, value in (overrides or {}).items():  # check each override alone for a precise message
        config_from_dict(apply_overrides({}, {dotted: value}, source), source=f"--set {dotted}",
                         plugin_sections=plugin_sections, section_hints=section_hints, across_keys=False)
    apply_overrides(data, overrides or {}, source)
    return config_from_dict(data, source=source, plugin_sections=plugin_sections, section_hints=section_hints)


def dump_toml(data: dict[str, Any]) -> str:
    """Minimal TOML writer for resolved configs (tables of scalars, lists, inline tables)."""
    lines: list[str] = []
    for section, body in data.items():
        if not isinstance(body, dict):
            continue
        lines.append(f"[{section}]")
        for key, value in body.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if value is None:
        return '""'
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


__all__ = ["Config", "load_config", "config_from_dict", "parse_set", "parse_value", "read_toml", "read_utf8", "dump_toml",
           "apply_overrides", "SECTIONS"]
