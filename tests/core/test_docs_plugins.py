"""Every code block of docs/plugins.md runs: the files it shows become a package, installed with
pip --target and discovered through its entry point; its config selects the documented components;
the hook reference's signatures are the hookspecs'."""

from __future__ import annotations

import inspect
import re
import textwrap
import tomllib
from pathlib import Path

import pytest
import torch
from retrain import hookspecs
from retrain.advantages.credit import build_advantage
from retrain.testing.builders import make_ctx
from retrain.testing.contracts import check_advantage
from retrain.testing.packages import install_target, on_sys_path

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
FENCE = re.compile(r"^( *)```(\w+)\n(.*?)^\1```$", re.M | re.S)


def blocks() -> list[tuple[str, str]]:
    """(language, text) of each fenced block, list-item indentation removed."""
    return [(lang, textwrap.dedent(body)) for _, lang, body in FENCE.findall(DOC.read_text())]


def split_blocks() -> tuple[dict[str, str], list[str], list[str]]:
    """Files (blocks whose first line is ``# path``), config snippets, and hook signatures."""
    files, configs, signatures = {}, [], []
    for lang, text in blocks():
        first = text.splitlines()[0]
        if re.fullmatch(r"# [\w./-]+\.(py|toml)", first):
            files[first[2:]] = text
        elif lang == "toml":
            configs.append(text)
        elif lang == "python" and text.startswith("def retrain_"):
            signatures.append(text)
        else:
            raise AssertionError(f"docs/plugins.md: a {lang} block this test does not run:\n{text}")
    return files, configs, signatures


@pytest.fixture(scope="module")
def doc_package(tmp_path_factory):
    files, _, _ = split_blocks()
    root = tmp_path_factory.mktemp("doc_plugin")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "retrain_myadv" / "__init__.py").write_text("")  # "plus an empty retrain_myadv/__init__.py"
    site = install_target(tmp_path_factory.mktemp("doc_site"), str(root))
    with on_sys_path(site):
        yield site


def test_the_blocks_are_the_ones_this_test_knows():
    files, configs, signatures = split_blocks()
    assert sorted(files) == ["pyproject.toml", "retrain_myadv/centered.py", "retrain_myadv/plugin.py",
                             "retrain_myadv/rank.py"]
    assert len(configs) == 1 and len(signatures) == len([n for n in dir(hookspecs) if n.startswith("retrain_")])


def test_the_documented_plugin_installs_and_its_config_runs(doc_package):
    _, (config,), _ = split_blocks()
    ctx = make_ctx(tomllib.loads(config))
    info = ctx.registry.plugins["myadv"]
    assert (info.ok, info.package, [c.name for c in info.components]) == (True, "retrain-myadv", ["centered", "rank"])
    ctx.registry.check_config(ctx.config)
    rank = build_advantage(ctx)  # RankAdvantage(temperature=0.5) from [rank]
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 1.0, 0.0, 0.0]])
    # by hand: ranks (ties share) [2.5, .5, .5, 2.5] and [3, 2, .5, .5]; centred, / (G - 1) / 0.5
    expected = torch.tensor([[1.0, -1.0, -1.0, 1.0], [1.5, 0.5, -1.0, -1.0]]) * 2 / 3
    assert torch.allclose(rank(rewards), expected)
    check_advantage(rank)


@pytest.mark.parametrize("name", ["centered", "retrain_myadv.centered.centered"])
def test_the_plain_function_works_by_name_and_dotted_path(doc_package, name):
    adv = build_advantage(make_ctx({"algorithm": {"advantage_mode": name}}))
    assert torch.equal(adv(torch.tensor([[1.0, 0.0, 0.0, 0.0]])), torch.tensor([[0.75, -0.25, -0.25, -0.25]]))
    check_advantage(adv)


def test_hook_reference_signatures_are_the_hookspecs():
    _, _, signatures = split_blocks()
    for text in signatures:
        namespace = dict(vars(hookspecs))
        exec(compile(text + "\n    ...\n", str(DOC), "exec"), namespace)
        name = text.split("(", 1)[0].removeprefix("def ")
        assert inspect.signature(namespace[name]) == inspect.signature(getattr(hookspecs, name)), name
