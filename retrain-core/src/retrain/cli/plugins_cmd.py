"""``retrain plugins list | show | check | new``: what is installed, what it provides, what failed, and a
new plugin package to start from."""

from __future__ import annotations

import json
from pathlib import Path
import platform
import traceback
import warnings
from typing import Annotated, Any, Optional

import typer

from retrain.errors import PluginError, did_you_mean

plugins_app = typer.Typer(help="List, inspect and check plugins (entry-point group \"retrain\").",
                          no_args_is_help=True, add_completion=False)

#: JSON schema of ``retrain plugins list --json`` (documented in docs/cli.md; a test checks it).
LIST_JSON_VERSION = 1


def _registry() -> Any:
    from retrain.plugins import load_plugins

    with warnings.catch_warnings():  # listing shows failures as rows; no warning lines needed
        warnings.simplefilter("ignore")
        return load_plugins(strict=False)


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


def _kind_word(kind: str) -> str:
    return kind.replace("_", " ")


def _provides(info: Any, kind: str | None = None) -> str:
    groups: dict[str, list[str]] = {}
    for c in info.components:
        if kind is None or c.kind == kind:
            groups.setdefault(c.kind, []).append(c.name)
    if not groups:
        return "(registers nothing yet)"
    return " · ".join(f"{_kind_word(k)}: {', '.join(names)}" for k, names in groups.items())


def _table(rows: list[list[str]], align: list[list[str]]) -> list[str]:
    """Rows with the first columns padded to the widest cell in ``align`` (all rows of all tables)."""
    widths = [max(len(r[i]) for r in align) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]).rstrip() for r in rows]


def render_list(registry: Any, show_all: bool = False, kind: str | None = None) -> str:
    """The text of ``retrain plugins list`` (format of CONVENTIONS.md)."""
    from retrain import __version__
    from retrain.plugins import ENTRY_POINT_GROUP, KINDS

    plugins = list(registry.plugins.values())
    third = [p for p in plugins if not p.builtin]
    show_builtins = show_all or kind is not None
    ok = [p for p in plugins if p.ok and (show_builtins or not p.builtin)
          and (kind is None or any(c.kind == kind for c in p.components))]
    failed = [p for p in plugins if not p.ok]
    head = (f"retrain-core {__version__} · python {platform.python_version()} · "
            f"{_plural(len([p for p in third if p.ok]), 'plugin')} (entry-point group \"{ENTRY_POINT_GROUP}\")")
    lines = [head, ""]
    rows = [["PLUGIN", "PACKAGE", "VERSION", "PROVIDES"]]
    rows += [[p.name, p.package, p.version, _provides(p, kind)] for p in sorted(ok, key=_order)]
    failed_rows = [[p.name, p.package, p.version, f"{p.error}  → retrain plugins show {p.name}"]
                   for p in sorted(failed, key=_order)]
    if ok:
        lines += _table(rows, rows + failed_rows)
    elif kind is not None:
        lines.append(f"Nothing provides a {_kind_word(kind)}.")
    else:
        lines.append("No plugins installed (pip install retrain-hicra, retrain-vllm or retrain-verifiers).")
    if failed:
        lines += ["", f"{_plural(len(failed), 'plugin')} failed to load:"]
        lines += _table(failed_rows, rows + failed_rows)
    if registry.conflicts:
        lines += ["", "Conflicts:"] + [f"  {c}" for c in registry.conflicts]
    builtins = [p for p in plugins if p.builtin and p.ok]
    if not show_builtins:
        counts = {k: sum(1 for p in builtins for c in p.components if c.kind == k) for k in KINDS}
        parts = [_plural(n, _kind_word(k)) for k, n in counts.items() if n]
        lines.append("")
        lines.append(f"Built-ins hidden (retrain-core: {', '.join(parts)}); --all lists them." if parts
                     else "No built-in components registered.")
    return "\n".join(lines) + "\n"


def _order(p: Any) -> tuple[bool, str]:
    return (not p.builtin, p.name)


def list_json(registry: Any, show_all: bool = False, kind: str | None = None) -> dict[str, Any]:
    from retrain import __version__
    from retrain.plugins import ENTRY_POINT_GROUP

    rows = []
    for p in sorted(registry.plugins.values(), key=_order):
        if p.builtin and not (show_all or kind):
            continue
        row = p.to_json()
        if kind is not None:
            row["components"] = [c for c in row["components"] if c["kind"] == kind]
            if not row["components"] and p.ok:
                continue
        rows.append(row)
    return {"schema": LIST_JSON_VERSION, "retrain_core": __version__, "python": platform.python_version(),
            "entry_point_group": ENTRY_POINT_GROUP, "plugins": rows, "conflicts": list(registry.conflicts)}


@plugins_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (schema in docs/cli.md).")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Include the built-in components of retrain-core.")] = False,
    kind: Annotated[Optional[str], typer.Option("--kind", metavar="KIND",
                                                help="Only plugins providing this kind (built-ins included), "
                                                     "e.g. advantage, transform, engine.")] = None,
) -> None:
    """List installed plugins and what they provide; failed plugins get their own rows."""
    from retrain.plugins import normalize_kind

    kind = normalize_kind(kind) if kind is not None else None
    registry = _registry()
    if as_json:
        typer.echo(json.dumps(list_json(registry, show_all, kind), indent=2))
    else:
        typer.echo(render_list(registry, show_all, kind), nl=False)


def _find(registry: Any, name: str) -> Any:
    if name in registry.plugins:
        return registry.plugins[name]
    for p in registry.plugins.values():  # a package name or a component name also finds the plugin
        if p.package == name or any(c.name == name for c in p.components):
            return p
    choices = [*registry.plugins, *(c.name for p in registry.plugins.values() for c in p.components)]
    raise PluginError(f'no plugin or component named "{name}".{did_you_mean(name, choices)} '
                      f"Installed plugins: {', '.join(sorted(registry.plugins)) or 'none'}.")


def render_show(p: Any) -> str:
    lines = [f"plugin   {p.name}", f"package  {p.package} {p.version}".rstrip(), f"module   {p.module}",
             f"file     {p.file or '-'}", f"status   {'ok' if p.ok else 'FAILED: ' + p.error}",
             f"hooks    {', '.join(p.hooks) or '-'}"]
    if not p.ok and p.exception is not None:
        lines += ["", "traceback:"] + ["  " + line for line in "".join(
            traceback.format_exception(type(p.exception), p.exception, p.exception.__traceback__)).splitlines()]
    for c in p.components:
        lines += ["", f"{_kind_word(c.kind)} {c.name}: {c.summary or '(no docstring)'}"]
        opts = c.options()
        if c.kind != "command":
            lines.append(f"  options (section [{c.config_section}]):" if opts else "  options: none")
        for o in opts:
            default = "required" if o.required else f"default {o.default!r}"
            lines.append(f"    {o.name}: {o.type or 'any'} ({default})")
    if p.ok and not p.components:
        lines += ["", "registers nothing yet"]
    return "\n".join(lines) + "\n"


@plugins_app.command("show")
def show_command(name: Annotated[str, typer.Argument(help="A plugin, package or component name.")]) -> None:
    """Show a plugin: module, file, hooks, and each component with its summary and options."""
    typer.echo(render_show(_find(_registry(), name)), nl=False)


@plugins_app.command("check")
def check_command() -> None:
    """Load every plugin, check its components and build them with their defaults; exit 1 if anything failed (for CI)."""
    from retrain.plugins.check import BUILT_KINDS, build_component, check_context, component_problems, offline

    registry = _registry()
    problems = 0
    built = needs_config = 0
    with offline():
        ctx = check_context(registry)
        for p in sorted(registry.plugins.values(), key=_order):
            if not p.ok:
                problems += 1
                typer.echo(f"FAIL  {p.name} ({p.package} {p.version}): {p.error}".replace(" )", ")"))
                continue
            issues = [f"{c.kind} {c.name}: {why}" for c in p.components for why in component_problems(c)]
            for c in p.components:
                result = build_component(registry, c, ctx)
                built += result.status == "built"
                needs_config += result.status == "needs configuration"
                if result.status == "failed":
                    issues.append(f"{c.kind} {c.name}: {result.detail}")
            problems += len(issues)
            status = "FAIL" if issues else "ok  "
            typer.echo(f"{status}  {p.name} ({p.package} {p.version}): {_plural(len(p.components), 'component')}"
                       .replace(" )", ")"))
            for text in issues:
                typer.echo(f"        {text}")
    for text in registry.conflicts:
        problems += 1
        typer.echo(f"FAIL  conflict: {text}")
    kinds = ", ".join(_kind_word(k) + "s" for k in BUILT_KINDS)
    typer.echo(f"Built with default options: {built} components ({kinds}); {needs_config} need configuration first.")
    typer.echo(f"{_plural(len(registry.plugins), 'plugin')} checked, {_plural(problems, 'problem')}.")
    if problems:
        raise typer.Exit(1)


@plugins_app.command("new")
def new_command(
    name: Annotated[str, typer.Argument(help="The component's name, e.g. myadv (package retrain-myadv).")],
    kind: Annotated[str, typer.Option("--kind", metavar="KIND",
                                      help="advantage, reward, environment, transform, engine or backend.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the package folder.")] = Path("."),
) -> None:
    """Write an installable plugin package with one component and contract tests that pass as generated."""
    from retrain.plugins import normalize_kind
    from retrain.plugins.scaffold import package_names, write_plugin

    root = write_plugin(name, normalize_kind(kind), directory)
    module = package_names(name)["module"]
    typer.echo(f"wrote {root}/ ({module}: plugin.py registers it, {normalize_kind(kind)}.py is the component, "
               f"tests/ its contract tests)")
    typer.echo(f'next: pip install -e "{root}[test]" && pytest -q {root} && retrain plugins show {name}')
