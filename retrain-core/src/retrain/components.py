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

from retrain.config.values import type_name
from retrain.errors import PluginError, did_you_mean

#: Factory parameters that are injected at build time, not options.
INJECTED = {"ctx"}


@dataclass
class Option:
    name: str
    type: str  # the annotation in TOML words ("number"), as written when unresolvable, "" when unannotated
    default: Any  # inspect.Parameter.empty when required
    required: bool
    annotation: Any = None  # the resolved type, when it could be resolved


@dataclass
class Component:
    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str  # the plugin that registered it
    target: Any = None  # what was registered, when the factory wraps it (a plain function)

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.factory if self.target is None else self.target) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @property
    def config_section(self) -> str:
        """The config section whose keys are this component's options."""
        return getattr(self.factory, "config_section", self.name)

    def options(self) -> list[Option]:
        return factory_options(self.factory)


def _signature_target(factory: Callable[..., Any]) -> Callable[..., Any]:
    """What to read a factory's parameters from: a class's own ``__init__`` (a class without one,
    like ``DrGRPO``, takes no options: not ``object.__init__``'s ``*args, **kwargs``)."""
    if not inspect.isclass(factory):
        return factory
    if factory.__init__ is object.__init__:  # type: ignore[misc]
        return _no_options
    return factory.__init__  # type: ignore[misc]


def _no_options(self: Any) -> None:
    """The signature of a class that defines no ``__init__``."""


def factory_options(factory: Callable[..., Any]) -> list[Option]:
    """The options of a factory: its keyword parameters (minus injected ones like ``ctx``)."""
    target = _signature_target(factory)
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    try:
        hints = typing.get_type_hints(target, include_extras=True)  # keeps Annotated[..., Bounds(...)]
    except Exception:  # unresolvable forward references: keep the text, skip type checks
        hints = {}
    out = []
    for p in sig.parameters.values():
        if p.name in ("self", *INJECTED) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            continue
        ann, hint = p.annotation, hints.get(p.name)
        # TOML words (number, list of string), as config errors and `retrain help` name types
        text = "" if ann is p.empty else type_name(hint) if hint is not None else \
            (ann if isinstance(ann, str) else str(ann).replace("typing.", ""))
        out.append(Option(p.name, text, p.default, p.default is p.empty, hint))
    return out


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
    """Import a file by path, under its stem (worker processes and pickling find it by that name)."""
    name = file.stem
    taken = sys.modules.get(name)
    if taken is not None and Path(getattr(taken, "__file__", "") or "").resolve() == file:
        return taken
    found = importlib.util.find_spec(name) if taken is None else None
    if taken is not None or (found is not None and Path(found.origin or "").resolve() != file):
        raise PluginError(f"{label}: the file {file.name} has the name of an installed module {name!r}, which it "
                          f"would shadow. Rename the file (e.g. my_{name}.py).")
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise PluginError(f"{label}: cannot import {file} (not a Python file?).")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _append_to_path(file.parent)  # its sibling modules import; installed packages still come first
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise PluginError(f"{label}: importing {file} failed: {type(e).__name__}: {e}") from e
    return module


def _append_to_path(folder: Path) -> None:
    """Make ``folder`` importable at the END of sys.path, so that nothing in it shadows an installed package."""
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
        importlib.invalidate_caches()


def _local_module_folder(top: str, dirs: list[Path]) -> Path | None:
    """The first folder in ``dirs`` holding module ``top`` (``top.py`` or package ``top/``)."""
    return next((d for d in dirs if (d / f"{top}.py").is_file() or (d / top).is_dir()), None)


def load_dotted(path: str, where: str = "", search_dirs: Iterable[str | Path] = ()) -> Any:
    """Import ``module.attr``, ``module:attr`` or ``path/to/file.py:attr``.

    Dotted paths run code, like the config that names them (see docs/reliability.md, trust model).
    A module name resolves to an installed module first (site-packages, the standard library);
    only a name nothing installed provides is looked up in ``search_dirs`` (the config file's
    folder), then the working directory, whose folder is then appended to the end of
    ``sys.path``: a stray ``json.py`` or ``numpy.py`` lying around never replaces a dependency.
    File paths are relative to the same folders, in the same order.
    """
    label = f'{where} = "{path}"' if where else f'"{path}"'
    modname, _, attr = path.rpartition(":") if ":" in path else path.rpartition(".")
    if not modname or not attr:
        raise PluginError(f"{label}: expected a dotted path module.function, or path/to/file.py:function.")
    dirs = list(dict.fromkeys([*(Path(d).resolve() for d in search_dirs), Path(os.getcwd()).resolve()]))
    looked = f"looked in {', '.join(str(d) for d in dirs)}"
    local: Path | None = None
    if modname.endswith(".py") or "/" in modname or os.sep in modname:
        modname = modname if modname.endswith(".py") else modname + ".py"
        candidates = [d / modname for d in dirs] if not Path(modname).is_absolute() else [Path(modname)]
        file = next((c for c in candidates if c.is_file()), None)
        if file is None:
            raise PluginError(f"{label}: no such file {modname} ({looked}).")
        module = _import_file(file.resolve(), label)
    else:
        top = modname.split(".")[0]
        local = _local_module_folder(top, dirs)
        if local is not None and top not in sys.modules and importlib.util.find_spec(top) is None:
            _append_to_path(local)
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name and modname.startswith(e.name):
                raise PluginError(f"{label}: cannot import module {modname!r} ({looked} and site-packages). "
                                  f"Check the name, or put {top}.py next to the config.") from e
            raise PluginError(f"{label}: importing {modname!r} failed: {type(e).__name__}: {e}") from e
        except Exception as e:
            raise PluginError(f"{label}: importing {modname!r} failed: {type(e).__name__}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        hint = did_you_mean(attr, names)
        origin = Path(getattr(module, "__file__", "") or "")
        if local is not None and local not in origin.parents:
            hint += (f" The installed module {module.__name__!r} ({origin}) takes precedence over the one in {local}; "
                     f"rename yours, or name the file: \"{local / modname.replace('.', '/')}.py:{attr}\".")
        raise PluginError(f"{label}: module {module.__name__!r} has no attribute {attr!r}." + hint) from None
