"""Text generated from the code: the config reference (schema.py), the hook reference
(hookspecs.py), the built-in component list, the CLI reference and the starter config.

``retrain help``, ``retrain init`` and ``retrain man --sync`` use these; tests keep docs/ equal
to them, so the manual cannot drift from the code.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import MISSING, fields
from typing import Any

from retrain.config import _toml_value
from retrain.config.schema import SECTIONS, toml_key
from retrain.config.values import Bounds, type_name

#: Sections written active by ``retrain init``; the others are written commented out.
STARTER_ACTIVE = ("backend", "model", "algorithm", "training", "inference", "data", "reward", "logging", "eval")


def _default(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _doc(f: Any) -> str:
    """The key's doc line plus its range, as values.check_value enforces it."""
    bounds = f.metadata.get("bounds")
    label = "Range:" if isinstance(bounds, Bounds) else "Must be"  # a FolderName: "Must be one folder name ..."
    return f.metadata.get("doc", "") + (f" {label} {bounds.text()}." if bounds else "")


def _rows(section: str) -> list[tuple[str, str, str, str, tuple[str, ...] | None]]:
    """(key, type, default as TOML, doc, choices) for each key of a core section."""
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    return [(toml_key(f.name), type_name(hints[f.name]), _toml_value(_default(f)), _doc(f),
             f.metadata.get("choices")) for f in fields(cls)]


def config_reference_markdown() -> str:
    out = []
    for section, cls in SECTIONS.items():
        out.append(f"### `[{section}]`\n\n{inspect.getdoc(cls) or ''}\n")
        out.append("| key | type | default | meaning |\n|---|---|---|---|")
        for key, tp, default, doc, choices in _rows(section):
            doc = doc + (f" One of: {', '.join(f'`{c}`' for c in choices)}." if choices else "")
            out.append(f"| `{key}` | {tp} | `{default}` | {doc.replace('|', '&#124;')} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def config_reference_text(only: str | None = None) -> str:
    out = []
    for section, cls in SECTIONS.items():
        if only and section != only:
            continue
        out.append(f"[{section}]  {inspect.getdoc(cls) or ''}")
        for key, tp, default, doc, choices in _rows(section):
            extra = f" One of: {', '.join(choices)}." if choices else ""
            out.append(f"  {key} = {default}  ({tp})")
            out.append(f"      {doc}{extra}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def starter_config() -> str:
    """A commented config: every key with its doc; main sections active, the rest commented out."""
    out = ["# retrain run configuration. Every key is shown with its default; delete what you do not change.",
           "# Reference: `retrain help` or `retrain man config`. Run: `retrain THIS_FILE.toml`.", ""]
    for section, cls in SECTIONS.items():
        active = section in STARTER_ACTIVE
        lead = "" if active else "# "
        out.append(f"# {inspect.getdoc(cls) or ''}")
        out.append(f"{lead}[{section}]")
        for key, _tp, default, doc, choices in _rows(section):
            extra = f" One of: {', '.join(choices)}." if choices else ""
            out.append(f"# {doc}{extra}")
            out.append(f"{lead}{key} = {default}")
        out.append("")
    return "\n".join(out)


def hook_signature(fn: Any) -> str:
    """The ``def`` line(s) of a hookspec exactly as written in hookspecs.py (up to the colon)."""
    source = inspect.getsource(fn)
    start = source.index("def ")
    end = source.index(":\n", start)
    return source[start:end + 1]


def hook_reference_markdown() -> str:
    """Each hookspec with its exact signature and docstring."""
    from retrain import hookspecs

    out = []
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if not name.startswith("retrain_"):
            continue
        out.append(f"### `{name}`\n\n```python\n{hook_signature(fn)}\n```\n\n{inspect.getdoc(fn) or ''}\n")
    return "\n".join(out).rstrip() + "\n"


def builtins_markdown() -> str:
    """The built-in components (no entry points), one table row each."""
    import warnings

    from retrain.plugins import KINDS, load_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry = load_plugins(entry_points=False, strict=False)
    rows = ["| kind | name | plugin | summary |", "|---|---|---|---|"]
    for kind in KINDS:
        for name in registry.names(kind):
            c = registry.components[kind][name]
            rows.append(f"| {kind} | `{name}` | {c.plugin} | {c.summary.replace('|', '&#124;')} |")
    failed = [f"- `{p.name}` failed to load: {p.error}" for p in registry.failed()]
    if len(rows) == 2:
        rows = ["No built-in components are registered yet."]
    return "\n".join(rows + ([""] + failed if failed else [])) + "\n"


def builtin_plugin_commands() -> dict[str, Any]:
    """The click commands that retrain-core registers through ``retrain_register_commands``
    (eval, bench, campaign, plot, squeeze, ...), built from their Typer apps; installed plugins'
    commands are left out so that the reference does not depend on what is installed."""
    import warnings

    import typer

    from retrain.plugins import load_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry = load_plugins(entry_points=False, strict=False)
    out = {}
    for name, component in registry.commands().items():
        if component.plugin.startswith("builtin."):
            cmd = typer.main.get_command(component.factory())
            cmd.help = cmd.help or component.summary
            out[name] = cmd
    return out


def cli_reference_markdown(group: Any, extra: dict[str, Any] | None = None) -> str:
    """Every built-in command and sub-command with its arguments and options, from the click
    objects: ``group``'s own commands plus ``extra`` (default: :func:`builtin_plugin_commands`)."""
    out = []
    top = {**(builtin_plugin_commands() if extra is None else extra), **group.commands}

    def walk(cmd: Any, path: str) -> None:
        sub = top if cmd is group else getattr(cmd, "commands", None)
        if sub:
            if path != "retrain" and (cmd.help or "").strip():
                out.append(f"### `{path}`\n\n{cmd.help.strip()}\n")
            for name in sorted(sub):
                if name == "run" and cmd is group:  # the default command: `retrain RUN.toml`
                    walk(sub[name], f"{path} RUN.toml")
                elif not sub[name].hidden:
                    walk(sub[name], f"{path} {name}")
            return
        out.append(f"### `{path}`\n\n{(cmd.help or '').strip()}\n")
        rows = []
        for p in cmd.params:
            if getattr(p, "hidden", False) or p.name == "help":
                continue
            names = ", ".join(p.opts) if p.param_type_name == "option" else p.name.upper()
            help_text = (getattr(p, "help", None) or "").replace("|", "&#124;")
            rows.append(f"| `{names}` | {help_text} |")
        if rows:
            out.append("| argument / option | meaning |\n|---|---|\n" + "\n".join(rows) + "\n")

    walk(group, "retrain")
    return "\n".join(out).rstrip() + "\n"
