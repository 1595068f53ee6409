"""The one checker of config values: core sections (schema.py) and plugin options alike.

``check_value(value, tp, bounds)`` returns ``(problem, coerced)``: ``problem`` is "" when the
value fits, else the end of a one-line error ("expected number, got string.", "must be at
least 1."). Types are named in TOML words (string, integer, number, boolean, table, list of X)
wherever they appear: errors, ``retrain help``, docs/config.md, ``retrain plugins show``.

Rules every value follows (docs/config.md "Value checks"):

- an integer is accepted where a number is expected; a boolean is never a number;
- numbers must be finite (TOML's ``nan`` and ``inf`` are rejected) and integers must fit in
  64 bits (the TOML specification's range; Python would accept any size);
- a range, when the key has one, is written as :class:`Bounds` (``opt(..., ge=1)`` in schema.py, ``Annotated[float, Bounds(gt=0)]`` on a plugin option);
- a folder name (``[logging] run_name``: ``opt(..., folder_in="[logging] log_dir")``) is
  :class:`FolderName`: one folder, never a path.

Why not pydantic: its messages are multi-line, name Python types ("Input should be a valid
number, unable to parse string as a number [type=float_parsing, ...]") and it adds ~0.3 s to
every CLI start; retrain needs one TOML-worded line per mistake, and the types it checks are few.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Bounds:
    """An allowed range: ``ge``/``gt`` below, ``le``/``lt`` above (any may be None)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    why: str = ""  # appended to the error, e.g. "(use [eval] for greedy decoding)"

    def problem(self, value: float) -> str:
        if (self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt) or \
                (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt):
            return f"must be {self.text()}" + (f" {self.why}" if self.why else "") + "."
        return ""

    def text(self) -> str:
        """'at least 1', '> 0', 'in (0, 1]' (as docs and errors write it)."""
        low, high = (self.ge, self.gt), (self.le, self.lt)
        if any(v is not None for v in low) and any(v is not None for v in high):
            lo = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}"
            hi = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})"
            return f"in {lo}, {hi}"
        if self.ge is not None:
            return f"at least {_num(self.ge)}"
        if self.gt is not None:
            return f"> {_num(self.gt)}"
        if self.le is not None:
            return f"at most {_num(self.le)}"
        return f"< {_num(self.lt)}" if self.lt is not None else "any value"


@dataclass(frozen=True)
class FolderName:
    """A string that names one folder inside a parent folder, or is empty: ``[logging] run_name``
    (a path such as ``../x`` or ``/abs`` would write outside ``log_dir``)."""

    parent: str  # the key naming the parent folder, e.g. "[logging] log_dir"

    def problem(self, value: str) -> str:
        from pathlib import PurePosixPath, PureWindowsPath

        if value and (value in (".", "..") or any(c in value for c in "/\\\0")
                      or PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute()):
            return (f'must be one folder name inside {self.parent} (no "/", "..", or absolute path); choose the '
                    f"parent folder with {self.parent} instead.")
        return ""

    def text(self) -> str:
        return f"one folder name inside {self.parent}"


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def toml_type(value: Any) -> str:
    """The TOML word for a Python value's type ("integer", "list", ...)."""
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "integer", float: "number", dict: "table", list: "list"}.get(
        type(value), type(value).__name__)


def _unwrap(tp: Any) -> tuple[Any, Bounds | None]:
    """``Annotated[float, Bounds(...)]`` -> (float, Bounds)."""
    if typing.get_origin(tp) is typing.Annotated:
        base, *meta = typing.get_args(tp)
        return base, next((m for m in meta if isinstance(m, Bounds)), None)
    return tp, None


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def type_name(tp: Any) -> str:
    """A type in TOML words: number, integer, list of string, string or integer, ..."""
    tp, _ = _unwrap(tp)
    if _union_args(tp) is not None:
        return " or ".join(type_name(a) for a in _union_args(tp) if a is not type(None)) or "nothing"
    origin = typing.get_origin(tp)
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return "list" if arg is Any else f"list of {type_name(arg)}"
    if origin is dict:
        return "table"
    if origin is typing.Literal:
        return " or ".join(json.dumps(a) for a in typing.get_args(tp))  # as TOML writes them: "auto", true
    return {str: "string", int: "integer", float: "number", bool: "boolean", dict: "table", list: "list",
            Any: "any value"}.get(tp, getattr(tp, "__name__", str(tp)))


def _fits(value: Any, tp: Any) -> tuple[bool | None, Any]:
    """(True, coerced) / (False, value) / (None, value) when ``tp`` is a type we cannot check."""
    tp, _ = _unwrap(tp)
    if tp is Any:
        return True, value
    union = _union_args(tp)
    if union is not None:
        unknown = False
        for arg in union:
            ok, coerced = _fits(value, arg)
            if ok:
                return True, coerced
            unknown = unknown or ok is None
        return (None if unknown else False), value
    if tp is type(None):
        return value is None, value
    origin = typing.get_origin(tp)
    if origin is list or tp is list:
        if not isinstance(value, list):
            return False, value
        (arg,) = typing.get_args(tp) or (Any,)
        out = []
        for item in value:
            ok, item = _fits(item, arg)
            if not ok:
                return ok, value
            out.append(item)
        return True, out
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if origin is typing.Literal:
        return value in typing.get_args(tp), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp in (str, bool):
        return isinstance(value, tp), value
    return None, value


def _out_of_range(value: Any) -> str:
    """Non-finite numbers and integers beyond 64 bits, anywhere inside ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number."
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        return "does not fit in a 64-bit integer (TOML's integer range)."
    if isinstance(value, list):
        return next((p for p in map(_out_of_range, value) if p), "")
    return ""


def check_value(value: Any, tp: Any, bounds: Bounds | FolderName | None = None) -> tuple[str, Any]:
    """``('', coerced)`` when ``value`` fits ``tp`` (and ``bounds``), else ``(problem, value)``.

    A type this checker does not know (a class, a Protocol) passes unchecked: the component
    that receives the value is then the judge.
    """
    ok, coerced = _fits(value, tp)
    if ok is False:
        return f"expected {type_name(tp)}, got {toml_type(value)}.", value
    problem = _out_of_range(coerced)
    if problem:
        return problem, value
    bounds = bounds or _unwrap(tp)[1]
    if isinstance(bounds, Bounds) and isinstance(coerced, (int, float)) and not isinstance(coerced, bool):
        problem = bounds.problem(coerced)
    elif isinstance(bounds, FolderName) and isinstance(coerced, str):
        problem = bounds.problem(coerced)
    return problem, (value if problem else coerced)


__all__ = ["Bounds", "FolderName", "check_value", "type_name", "toml_type"]
