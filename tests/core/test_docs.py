"""The manual is checked against the code: generated sections and the packaged copy are current."""

from __future__ import annotations

import inspect
from pathlib import Path

from retrain import hookspecs
from retrain.cli.main import app
from retrain.cli.man import out_of_date, package_docs_dir, render_auto
from retrain.cli.reference import _rows, hook_signature
from retrain.config.schema import SECTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_generated_sections_and_packaged_copy_are_up_to_date():
    stale = out_of_date(DOCS, app, package_docs_dir())
    assert stale == [], "out of date (run `retrain man --sync`): " + "; ".join(stale)


def test_hook_reference_has_every_hookspec_signature_verbatim():
    text = (DOCS / "plugins.md").read_text()
    specs = [fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("retrain_")]
    registration = [fn for fn in specs if fn.__name__.startswith("retrain_register_")]
    assert len(registration) == 9 and len(specs) == 16  # + 7 lifecycle hooks
    for fn in specs:
        sig = hook_signature(fn)
        first = "register: Register" if fn in registration else "ctx: RunContext"
        assert sig.startswith(f"def {fn.__name__}({first}"), sig
        assert f"```python\n{sig}\n```" in text, fn.__name__
        doc = inspect.getdoc(fn) or ""
        assert "Example::" in doc and "Since 0.1.0." in doc, fn.__name__  # hookspecs are documented like an API
        if fn not in registration:
            assert all(f"        {p}:" in fn.__doc__ for p in inspect.signature(fn).parameters), fn.__name__


def test_config_reference_has_every_key_with_its_default():
    text = (DOCS / "config.md").read_text()
    for section in SECTIONS:
        assert f"### `[{section}]`" in text
        for key, tp, default, _doc, _choices in _rows(section):
            assert f"| `{key}` | {tp} | `{default}` |" in text, (section, key)


def test_render_auto_replaces_only_marked_sections():
    text = "before\n<!-- BEGIN AUTO:x -->\nold\n<!-- END AUTO:x -->\nafter\n"
    assert render_auto(text, {"x": lambda: "new\n"}) == "before\n<!-- BEGIN AUTO:x -->\n\nnew\n\n<!-- END AUTO:x -->\nafter\n"


def test_nothing_points_outside_the_repository():
    """Code and docs cite the repository's own docs, never a design file that ships elsewhere."""
    repo = Path(__file__).resolve().parents[2]
    files = [*repo.glob("retrain-core/src/**/*.py"), *repo.glob("plugins/*/src/**/*.py"), *repo.glob("docs/*.md"),
             *repo.glob("*.md"), *repo.glob("plugins/*/README.md")]
    assert len(files) > 50
    # the needles are built, so this file does not itself hold the references it looks for
    needles = ("DESIGN" + " section", ".." + "/shared")
    offenders = [f"{f.relative_to(repo)}: {needle}" for f in files for needle in needles if needle in f.read_text()]
    assert offenders == []
