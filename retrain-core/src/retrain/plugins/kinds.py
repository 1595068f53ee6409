"""The component kinds: one table row per kind, and the rule that tells a plain function from a factory.

Each :class:`Kind` says how it is registered (its hook), how it reads in messages, which config
keys select it, which names first-party packages provide, and what a plain function registered
for it means.

The rule (docs/plugins.md, "Two forms"): a registered object is a **factory** when it is a class,
or a function whose positional parameters all have defaults (its options; a required option is
keyword-only, after ``*``; ``ctx`` is injected). A function with a required positional parameter
(other than ``ctx``) is a **plain function**: the component itself, called with the kind's inputs
(an advantage ``fn(rewards [B, G]) -> [B, G]``, a reward ``fn(response, reference) -> float``).
Kinds with no plain form refuse one at registration, with a message naming both forms.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from retrain.errors import PluginError, did_you_mean

#: Builds a factory from a plain function and how to name it for import (``module:attr``).
PlainAdapter = Callable[[Callable[..., Any], str], Callable[..., Any]]


@dataclass(frozen=True)
class Kind:
    name: str  # "advantage"
    label: str  # how it reads in messages: "no such advantage mode"
    hook: str  # its registration hook in hookspecs.py
    selectors: tuple[tuple[str, str], ...] = ()  # config keys (section, key) that select it by name
    first_party: Mapping[str, str] = field(default_factory=dict)  # name -> distribution that provides it
    plain: PlainAdapter | None = None  # what a plain function means for this kind (None: refused)
    plain_form: str = ""  # the plain function's signature, for messages and docs


def _itself(fn: Callable[..., Any], ref: str) -> Callable[..., Any]:
    """An advantage function is the component: a factory without options that returns it."""

    def factory() -> Callable[..., Any]:
        return fn

    return factory


def _scoring_function(fn: Callable[..., Any], ref: str) -> Callable[..., Any]:
    """A reward function runs through the ``custom`` reward (worker processes, timeouts): a factory
    with the custom reward's options except ``function``, which is ``fn`` (by import reference)."""
    from retrain.rewards.custom import CustomReward

    signature = inspect.signature(CustomReward)
    params = [p for p in signature.parameters.values() if p.name != "function"]

    def factory(**options: Any) -> Any:
        return CustomReward(function=ref, **options)

    hints = typing.get_type_hints(CustomReward.__init__)
    factory.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    factory.__annotations__ = {p.name: hints[p.name] for p in params if p.name in hints}
    factory.config_section = "reward"  # type: ignore[attr-defined]
    return factory


KINDS: dict[str, Kind] = {k.name: k for k in [
    Kind("backend", "backend", "retrain_register_backends", (("backend", "backend"),),
         {"tinker": "retrain-tinker"}),
    Kind("engine", "engine", "retrain_register_engines", (("inference", "engine"),),
         {"vllm": "retrain-vllm", "tinker": "retrain-tinker"}),
    Kind("reward", "reward", "retrain_register_rewards", (("reward", "type"),),
         plain=_scoring_function, plain_form="fn(response, reference) -> float"),
    Kind("advantage", "advantage mode", "retrain_register_advantages", (("algorithm", "advantage_mode"),),
         plain=_itself, plain_form="fn(rewards [B, G]) -> advantages [B, G]"),
    Kind("transform", "transform", "retrain_register_transforms", (("algorithm", "transform_mode"),),
         {"gtpo_hicra": "retrain-hicra"}),
    Kind("environment", "environment", "retrain_register_environments",
         (("data", "source"), ("environment", "provider")), {"verifiers": "retrain-verifiers"}),
    Kind("planning_detector", "planning detector", "retrain_register_planning_detectors",
         (("planning", "detector"),), {"mined-grams": "retrain-hicra"}),
    Kind("logger", "logger", "retrain_register_loggers", (("logging", "loggers"),)),
    Kind("command", "command", "retrain_register_commands", (), {"hicra": "retrain-hicra", "tinker": "retrain-tinker"}),
]}

#: hook name -> kind
KIND_OF_HOOK = {k.hook: k for k in KINDS.values()}


def normalize_kind(text: str) -> str:
    """``advantages`` / ``planning-detector`` / ``planning detector`` -> a key of KINDS, or PluginError."""
    key = text.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in KINDS and key.endswith("s") and key[:-1] in KINDS:
        key = key[:-1]
    if key not in KINDS:
        raise PluginError(f'unknown component kind "{text}".{did_you_mean(key, KINDS)} '
                          f"Kinds: {', '.join(KINDS)}.")
    return key


def required_arguments(obj: Any) -> list[str] | None:
    """The required parameters of a function other than ``ctx`` (None for a class or no signature)."""
    if inspect.isclass(obj):
        return None
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    return [p.name for p in params if p.default is p.empty and p.name != "ctx"
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def import_reference(obj: Any) -> str:
    """``module:qualname`` of a function, so worker processes can import it by name."""
    return f"{obj.__module__}:{obj.__qualname__}"


def as_factory(kind: Kind, name: str, obj: Any, ref: str = "") -> Callable[..., Any]:
    """The rule of this module: ``obj`` itself when it is a factory; for a plain function, the
    kind's adapter (or an error naming both forms when the kind has no plain form)."""
    required = required_arguments(obj)
    if not required:
        return obj
    if kind.plain is None:
        raise PluginError(
            f'{kind.label} "{name}": {getattr(obj, "__name__", obj)!s}({", ".join(required)}) is a plain function, '
            f"but {'an' if kind.label[0] in 'aeiou' else 'a'} {kind.label} is registered as a class or a factory "
            "whose positional parameters all have defaults (its options). See docs/plugins.md, \"Two forms\".")
    return kind.plain(obj, ref or import_reference(obj))
