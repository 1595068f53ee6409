"""Components: factories whose typed keyword arguments are their options, and dotted paths.

A component is a class or function registered under a name (see ``retrain.plugins``). Its
options are its keyword parameters (minus injected ones such as ``ctx``); the docstring's first
line is its summary. This module reads those facts from signatures and imports dotted paths.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.errors import PluginError, did_you_mean

#: Factory parameters that are injected at build time, not options.
INJECTED = {"ctx"}


@dataclass
class Option:
    name: str
    type: str  # as written in the signature ("" when unannotated)
    default: Any  # inspect.Parameter.empty when required
    required: bool
    annotation: Any = None  # the resolved type, when it could be resolved


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


def _signature_target(factory: Callable[..., Any]) -> Callable[..., Any]:
    return factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]


def factory_options(factory: Callable[..., Any]) -> list[Option]:
    """The options of a factory: its keyword parameters (minus injected ones like ``ctx``)."""
    target = _signature_target(factory)
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: keep the text, skip type checks
        hints = {}
    out = []
    for p in sig.parameters.values():
        if p.name in ("self", *INJECTED) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            continue
        ann = p.annotation
        text = "" if ann is p.empty else (ann if isinstance(ann, str) else _type_text(ann))
        out.append(Option(p.name, text, p.default, p.default is p.empty, hints.get(p.name)))
    return out


def _type_text(tp: Any) -> str:
    return getattr(tp, "__name__", None) if typing.get_origin(tp) is None and hasattr(tp, "__name__") \
        else str(tp).replace("typing.", "")


def accepts_ctx(factory: Callable[..., Any]) -> bool:
    try:
        return "ctx" in inspect.signature(_signature_target(factory)).parameters
    except (TypeError, ValueError):
        return False


def jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else repr(value)


def check_option_value(option: Option, value: Any) -> str:
    """'' when ``value`` fits the option's annotation (or it cannot be checked), else why not.
    The same checker as core config keys (retrain.config.values)."""
    if option.annotation is None:
        return ""
    from retrain.config import _show
    from retrain.config.values import check_value

    problem, _ = check_value(value, option.annotation)
    return f"= {_show(value)}: {problem}" if problem else ""


def _import_file(file: Path, label: str) -> Any:
    name = file.stem
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise PluginError(f"{label}: cannot import {file} (not a Python file?).")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so that worker processes and pickling find it by name
    if str(file.parent) not in sys.path:
        sys.path.insert(0, str(file.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise PluginError(f"{label}: importing {file} failed: {type(e).__name__}: {e}") from e
    return module


def load_dotted(path: str, where: str = "", search_dirs: Iterable[str | Path] = ()) -> Any:
    """Import ``module.attr``, ``module:attr`` or ``path/to/file.py:attr``.

    Modules are searched in the working directory, then ``search_dirs`` (e.g. the config file's
    folder), then ``sys.path``; file paths are relative to the same folders.
    """
    label = f'{where} = "{path}"' if where else f'"{path}"'
    modname, _, attr = path.rpartition(":") if ":" in path else path.rpartition(".")
    if not modname or not attr:
        raise PluginError(f"{label}: expected a dotted path module.function, or path/to/file.py:function.")
    dirs = [Path(os.getcwd()), *(Path(d) for d in search_dirs)]
    if modname.endswith(".py") or "/" in modname or os.sep in modname:
        modname = modname if modname.endswith(".py") else modname + ".py"
        candidates = [d / modname for d in dirs] if not Path(modname).is_absolute() else [Path(modname)]
        file = next((c for c in candidates if c.is_file()), None)
        if file is None:
            raise PluginError(f"{label}: no such file {modname} (looked in "
                              f"{', '.join(str(d) for d in dirs)}).")
        module = _import_file(file.resolve(), label)
    else:
        for d in reversed(dirs):
            if str(d) not in sys.path:
                sys.path.insert(0, str(d))
        importlib.invalidate_caches()
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name and modname.startswith(e.name):
                raise PluginError(f"{label}: cannot import module {modname!r} (looked in "
                                  f"{', '.join(str(d) for d in dirs)} and site-packages). "
                                  f"Check the name, or put {modname.split('.')[0]}.py next to the config.") from e
            raise PluginError(f"{label}: importing {modname!r} failed: {type(e).__name__}: {e}") from e
        except Exception as e:
            raise PluginError(f"{label}: importing {modname!r} failed: {type(e).__name__}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise PluginError(f"{label}: module {module.__name__!r} has no attribute {attr!r}."
                          + did_you_mean(attr, names)) from None
