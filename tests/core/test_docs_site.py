"""The documentation site: `mkdocs build --strict` over docs/ succeeds (broken links, pages
missing from the nav and bad markdown extensions fail it), and every page is in the nav."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_docs_page_is_in_the_site_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if f" {p.name}" not in nav]
    assert not missing, f"add these pages to the nav of mkdocs.yml: {', '.join(missing)}"


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs comes with scripts/setup.sh --dev")
    pytest.importorskip("material", reason="mkdocs-material comes with scripts/setup.sh --dev")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "site" / "coming-from-trl-verl" / "index.html").read_text()
    assert "loss_type" in page and "<table" in page  # the key-by-key map rendered as tables
    assert (tmp_path / "site" / "cli" / "index.html").read_text().count("retrain campaign summary") >= 1
