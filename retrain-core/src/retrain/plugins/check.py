"""``retrain plugins check``: what a component gets wrong against the conventions, and whether it
builds with its default options before any run does.

Built here: advantages, rewards, transforms, environments, planning detectors and commands, with
a run context of the default config (tokenizer: retrain.testing's tiny one when transformers is
installed). Backends, engines and loggers are not: they load models, start servers or open run
files, which only a run should do. A component that needs configuration to build (a ``ConfigError``
or ``PluginError``, e.g. ``[reward] type = "custom"`` without ``function``) is reported as such,
not as a problem; any other exception is a problem.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from retrain.components import Component, _signature_target
from retrain.errors import RetrainError

#: Kinds whose components `plugins check` builds with their defaults.
BUILT_KINDS = ("advantage", "reward", "transform", "environment", "planning_detector", "command")


def component_problems(c: Component) -> list[str]:
    """What a component gets wrong against CONVENTIONS.md (summary, typed options, no **kwargs)."""
    out = []
    if not c.summary:
        out.append("no docstring (its first line is the summary users see)")
    try:
        params = inspect.signature(_signature_target(c.factory)).parameters.values()
    except (TypeError, ValueError):
        return out + ["signature cannot be read"]
    if any(p.kind == p.VAR_KEYWORD for p in params):
        out.append("takes **kwargs (options must be explicit keyword arguments)")
    untyped = [o.name for o in c.options() if not o.type]
    if untyped:
        out.append(f"untyped option(s): {', '.join(untyped)}")
    return out


@dataclass
class BuildResult:
    status: str  # "built" | "needs configuration" | "failed" | "not built"
    detail: str = ""


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """No network while building: a dataset that is not cached says so at once."""
    keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_context(registry: Any) -> Any:
    """A run context of the default config, for building components outside a run."""
    from retrain.config import config_from_dict
    from retrain.types import RunContext

    tokenizer = None
    try:
        from retrain.testing.models import tiny_tokenizer

        tokenizer = tiny_tokenizer()
    except ImportError:  # core-only installs: components that need a tokenizer say so
        pass
    return RunContext(config=config_from_dict({}, source="(defaults)"), registry=registry, tokenizer=tokenizer)


def build_component(registry: Any, c: Component, ctx: Any) -> BuildResult:
    """Build ``c`` with its default options (and close what it opened)."""
    if c.kind not in BUILT_KINDS:
        return BuildResult("not built", f"{c.kind}s are built by a run")
    if c.kind == "command":
        try:
            c.factory()
        except Exception as e:
            return BuildResult("failed", f"{type(e).__name__}: {e}")
        return BuildResult("built")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = registry.build(c.kind, c.name, ctx=ctx, options={})
    except RetrainError as e:
        return BuildResult("needs configuration", str(e).splitlines()[0] if str(e) else type(e).__name__)
    except Exception as e:
        return BuildResult("failed", f"building it with its default options failed: {type(e).__name__}: {e}")
    close = getattr(built, "close", None)
    if callable(close):
        close()
    return BuildResult("built")
