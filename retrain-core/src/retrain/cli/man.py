"""``retrain man``: the manual (docs/*.md) in the terminal, and ``--sync`` of its generated parts.

Where the manual lives: the source is ``docs/`` at the repository root. A copy ships inside the
package (``retrain/docs/``) so that an installed ``retrain man`` works without the repository;
``retrain man --sync`` regenerates the ``<!-- BEGIN AUTO:name -->`` sections of docs/ from the
code and refreshes that copy, and a test fails when either is stale. When run from a checkout,
``retrain man`` reads docs/ directly.

The CLI reference is generated from the root command it is given (``retrain man --sync`` passes
its own root; tests pass ``retrain.cli.main.app``): this module never imports ``retrain.cli.main``,
which imports it.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

import retrain
from retrain.errors import RetrainError, did_you_mean

AUTO = re.compile(r"(<!-- BEGIN AUTO:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END AUTO:(?P=name) -->)", re.S)


def package_docs_dir() -> Path:
    return Path(retrain.__file__).resolve().parent / "docs"


def repo_docs_dir() -> Path | None:
    """``<repo>/docs`` when retrain runs from a checkout (editable install), else None."""
    root = Path(retrain.__file__).resolve().parents[3]  # <repo>/retrain-core/src/retrain/__init__.py
    docs = root / "docs"
    return docs if docs.is_dir() and (root / "retrain-core" / "pyproject.toml").is_file() else None


def manual_dir() -> Path:
    return repo_docs_dir() or package_docs_dir()


def _generators(cli_root: Any) -> dict[str, Callable[[], str]]:
    """Generators of the AUTO sections; ``cli_root`` is the ``retrain`` click command (or its typer app)."""
    from retrain.cli import reference

    def cli() -> str:
        root = typer.main.get_command(cli_root) if isinstance(cli_root, typer.Typer) else cli_root
        return reference.cli_reference_markdown(root)

    return {"config": reference.config_reference_markdown, "hooks": reference.hook_reference_markdown,
            "builtins": reference.builtins_markdown, "cli": cli}


def render_auto(text: str, generators: dict[str, Callable[[], str]]) -> str:
    """``text`` with every AUTO section replaced by freshly generated content."""
    gens = generators
    cache: dict[str, str] = {}

    def fill(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in gens:
            raise RetrainError(f"unknown generated section AUTO:{name}; known: {', '.join(gens)}.")
        if name not in cache:
            cache[name] = gens[name]()
        return f"{m.group(1)}\n{cache[name]}\n{m.group(4)}"

    return AUTO.sub(fill, text)


def out_of_date(docs: Path, cli_root: Any, package_copy: Path | None = None) -> list[str]:
    """What ``--sync`` would change: generated sections of docs/, and the package's copy."""
    gens = _generators(cli_root)
    stale = []
    for f in sorted(docs.glob("*.md")):
        old = {m.group("name"): m.group(0) for m in AUTO.finditer(f.read_text())}
        new = {m.group("name"): m.group(0) for m in AUTO.finditer(render_auto(f.read_text(), gens))}
        changed = sorted(name for name in old if old[name] != new.get(name))
        if changed:
            stale.append(f"{f.name}: generated section(s) {', '.join(changed)}")
    if package_copy is not None:
        for f in sorted(docs.glob("*.md")):
            copy = package_copy / f.name
            if not copy.is_file() or copy.read_text() != f.read_text():
                stale.append(f"{copy}: differs from {f}")
        stale += [f"{c}: no longer in {docs}" for c in sorted(package_copy.glob("*.md"))
                  if not (docs / c.name).is_file()]
    return stale


def sync(docs: Path, package_copy: Path, cli_root: Any) -> list[str]:
    """Regenerate AUTO sections in ``docs`` and mirror docs/*.md into ``package_copy``."""
    changed = []
    gens = _generators(cli_root)
    for f in sorted(docs.glob("*.md")):
        old = f.read_text()
        new = render_auto(old, gens)
        if new != old:
            f.write_text(new)
            changed.append(str(f))
    package_copy.mkdir(parents=True, exist_ok=True)
    for f in sorted(docs.glob("*.md")):
        copy = package_copy / f.name
        if not copy.is_file() or copy.read_text() != f.read_text():
            shutil.copyfile(f, copy)
            changed.append(str(copy))
    for c in sorted(package_copy.glob("*.md")):
        if not (docs / c.name).is_file():
            c.unlink()
            changed.append(f"{c} (removed)")
    return changed


def topics(docs: Path) -> dict[str, Path]:
    return {f.stem: f for f in sorted(docs.glob("*.md"))}


def _title_and_summary(text: str) -> tuple[str, str]:
    """The ``# title`` and the first line of prose (outside code blocks, tables and lists)."""
    title, summary, in_code = "", "", False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("```"):
            in_code = not in_code
        elif in_code or not line or line.startswith(("<!--", "|", "- ", "* ")):
            continue
        elif line.startswith("# ") and not title:
            title = line[2:]
        elif not line.startswith("#") and not summary:
            summary = line
    return title, summary


def _plain(text: str) -> str:
    """The markdown without the AUTO marker comments."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("<!-- "))


def man_command(
    ctx: typer.Context,
    topic: Annotated[Optional[str], typer.Argument(help="Topic (file name in docs/ without .md); none = list.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    topic_opt: Annotated[Optional[str], typer.Option("--topic", help="Same as the TOPIC argument.")] = None,
    path: Annotated[bool, typer.Option("--path", help="Print where the manual's source lives and exit.")] = False,
    do_sync: Annotated[bool, typer.Option("--sync", help="Regenerate the generated sections of docs/ from the "
                                                         "code and refresh the packaged copy.")] = False,
) -> None:
    """Read the manual: quickstart, config, plugins, cli, ... (the same text as docs/)."""
    if fmt not in ("text", "json"):
        raise RetrainError(f'retrain man --format {fmt}: expected "text" or "json".')
    if do_sync:
        docs = repo_docs_dir()
        if docs is None:
            raise RetrainError("retrain man --sync needs a checkout of the retrain repository (docs/ next to "
                               f"retrain-core/); this install reads the packaged copy in {package_docs_dir()}.")
        changed = sync(docs, package_docs_dir(), ctx.find_root().command)
        typer.echo("\n".join(f"updated {c}" for c in changed) if changed else "docs are up to date")
        return
    docs = manual_dir()
    if path:
        typer.echo(str(docs))
        return
    available = topics(docs)
    name = topic_opt or topic
    if name is None:
        rows = [{"topic": t, "title": _title_and_summary(f.read_text())[0],
                 "summary": _title_and_summary(f.read_text())[1]} for t, f in available.items()]
        if fmt == "json":
            typer.echo(json.dumps({"source": str(docs), "topics": rows}, indent=2))
        else:
            width = max((len(r["topic"]) for r in rows), default=0)
            typer.echo("\n".join([f"retrain manual ({docs}); read a topic with `retrain man TOPIC`:", ""]
                                 + [f"  {r['topic'].ljust(width)}  {r['title']}" for r in rows]))
        return
    if name not in available:
        raise RetrainError(f'retrain man: no topic "{name}".{did_you_mean(name, available)} '
                           f"Topics: {', '.join(available) or 'none'}.")
    text = _plain(available[name].read_text())
    if fmt == "json":
        title, summary = _title_and_summary(text)
        out: dict[str, Any] = {"topic": name, "title": title, "summary": summary,
                               "path": str(available[name]), "text": text}
        typer.echo(json.dumps(out, indent=2))
    else:
        typer.echo(text)
