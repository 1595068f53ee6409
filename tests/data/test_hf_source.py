"""[data] source = "hf": local files in the layouts people have (a hub repo download, save_to_disk,
single parquet / jsonl / arrow files), presets, column mapping, answer extraction, filters, and
the one-line error offline. Fixtures are tiny datasets written here with `datasets`; no network."""

from __future__ import annotations

import json

import pytest
from retrain.config import config_from_dict
from retrain.environments.hf import HFEnvironment, extract_reference
from retrain.errors import ConfigError
from retrain.types import RunContext

datasets = pytest.importorskip("datasets")


def _env(num_problems: int = 2, **data) -> HFEnvironment:
    cfg = config_from_dict({"data": {"source": "hf", **data}, "eval": {"num_problems": num_problems}})
    from retrain.plugins import load_plugins

    registry = load_plugins(entry_points=False)
    return registry.build("environment", "hf", ctx=RunContext(config=cfg, registry=registry))


GSM = {
    "train": [{"question": f"Tom has {n} apples and buys 1,000 more. How many?",
               "answer": f"He has {n} + 1000 = <<{n}+1000={n + 1000}>>{n + 1000}.\n#### {n + 1000:,}"} for n in range(6)],
    "test": [{"question": "What is 3 + 4?", "answer": "3 + 4 = 7\n#### 7"},
             {"question": "What is 10 * 10?", "answer": "#### 100"}],
}


def _hub_repo_download(root, configs: dict[str, dict[str, list[dict]]]):
    """The folder `huggingface-cli download OWNER/NAME --repo-type dataset --local-dir root` leaves:
    README.md whose YAML lists configs, and <config>/<split>-00000-of-00001.parquet."""
    yaml = ["---", "configs:"]
    for config, splits in configs.items():
        yaml += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            (root / config).mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_list(rows).to_parquet(str(root / config / f"{split}-00000-of-00001.parquet"))
            yaml += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (root / "README.md").write_text("\n".join(yaml + ["---", "", "# fixture"]) + "\n")
    return root


def test_gsm8k_preset_on_a_hub_repo_download(tmp_path):
    root = _hub_repo_download(tmp_path / "gsm8k", {"main": GSM})
    env = _env(preset="gsm8k", path=str(root))
    assert len(env.train) == 6 and len(env.held_out) == 2  # the test split is held out
    by_prompt = {t.prompt: t.answer for t in env.train + env.held_out}
    assert by_prompt["Tom has 2 apples and buys 1,000 more. How many?"] == "1002"  # after ####, commas dropped
    assert by_prompt["What is 3 + 4?"] == "7"
    assert {t.prompt for t in env.eval_tasks(2)} == {"What is 3 + 4?", "What is 10 * 10?"}


def test_hendrycks_math_preset_concatenates_subject_configs_and_filters_levels(tmp_path):
    def rows(subject, split):
        return [{"problem": f"{subject} {split} problem {k}", "solution": f"So it is $\\boxed{{{k}}}$, not \\boxed{{x}}... "
                 f"final \\boxed{{\\frac{{{k}}}{{2}}}}", "level": f"Level {k % 5 + 1}", "type": subject.title()}
                for k in range(5)]
    subjects = ["algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                "prealgebra", "precalculus"]
    root = _hub_repo_download(tmp_path / "math", {s: {"train": rows(s, "train"), "test": rows(s, "test")}
                                                   for s in subjects})
    env = _env(preset="hendrycks_math", path=str(root), filters={"level": ["Level 1", "Level 2"]})
    assert len(env.train) == 7 * 2 and len(env.held_out) == 7 * 2  # levels 1-2 of 5, every subject
    task = next(t for t in env.train if t.prompt == "geometry train problem 1")
    assert task.answer == "\\frac{1}{2}"  # the LAST \boxed{} of the solution
    assert task.metadata["level"] == "Level 2" and task.metadata["type"] == "Geometry"
    only = _env(preset="hendrycks_math", path=str(root), name="geometry")  # the preset's configs, overridden
    assert {t.metadata["type"] for t in only.train} == {"Geometry"}


def test_math500_preset_on_a_save_to_disk_folder_holds_out_rows_of_its_only_split(tmp_path):
    rows = [{"problem": f"Compute ${k} + {k}$.", "solution": "...", "answer": str(2 * k), "level": k % 5 + 1,
             "subject": "Prealgebra", "unique_id": f"test/prealgebra/{k}.json"} for k in range(10)]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "m500"))
    env = _env(num_problems=3, preset="math500", path=str(tmp_path / "m500"))
    assert len(env.train) == 7 and len(env.held_out) == 3
    assert {t.id for t in env.train}.isdisjoint({t.id for t in env.held_out})
    assert next(t for t in env.train + env.held_out if t.prompt == "Compute $4 + 4$.").answer == "8"
    hard = _env(num_problems=1, preset="math500", path=str(tmp_path / "m500"), filters={"level": [5]})
    assert {t.prompt for t in hard.train + hard.held_out} == {"Compute $4 + 4$.", "Compute $9 + 9$."}


def test_jsonl_file_with_a_template_prompt_and_a_regex_answer(tmp_path):
    f = tmp_path / "quiz.jsonl"
    f.write_text("\n".join(json.dumps({"q": f"Name {k}?", "choices": "A/B/C", "explanation": f"so the answer is ({'ABC'[k % 3]})"})
                           for k in range(6)) + "\n")
    env = _env(path=str(f), prompt_field="{q} Options: {choices}.", answer_field="explanation",
               answer_extract="regex", answer_regex=r"answer is \(([A-C])\)")
    tasks = {t.prompt: t.answer for t in env.train + env.held_out}
    assert tasks["Name 4? Options: A/B/C."] == "B"
    assert len(env.held_out) == 2


def test_single_parquet_and_arrow_files_and_answers_taken_as_is(tmp_path):
    ds = datasets.Dataset.from_list([{"prompt": f"p{k}", "target": f" {k} "} for k in range(4)])
    ds.to_parquet(str(tmp_path / "rows.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    arrow = next((tmp_path / "saved").glob("*.arrow"))
    for path in (tmp_path / "rows.parquet", arrow, tmp_path / "saved"):
        env = _env(num_problems=1, path=str(path), prompt_field="prompt", answer_field="target")
        assert sorted(t.answer for t in env.train + env.held_out) == ["0", "1", "2", "3"], path


def test_mapping_mistakes_are_one_line_errors(tmp_path):
    root = _hub_repo_download(tmp_path / "gsm8k", {"main": GSM})
    with pytest.raises(ConfigError, match=r"split 'train' has no column 'questoin'\. Did you mean \"question\"\?"):
        _env(preset="gsm8k", path=str(root), prompt_field="questoin")
    with pytest.raises(ConfigError, match=r'\[data\] test_split = "validation": .* has no split "validation"\. .*Splits: test, train\.'):
        _env(preset="gsm8k", path=str(root), test_split="validation")
    with pytest.raises(ConfigError, match=r'\[data\] preset = "gsm8": no such preset\. Did you mean "gsm8k"\?'):
        _env(preset="gsm8")
    with pytest.raises(ConfigError, match=r'needs \[data\] path .* or \[data\] preset \(gsm8k, math500, hendrycks_math\)'):
        _env()
    with pytest.raises(ConfigError, match=r'\[data\] subjects and levels belong to source = "math"; .* filters = '):
        _env(preset="hendrycks_math", levels=[5])
    with pytest.raises(ConfigError, match=r"answer_extract = \"regex\" goes with \[data\] answer_regex"):
        _env(path=str(root), prompt_field="question", answer_extract="regex")


def test_offline_with_nothing_cached_is_one_line_saying_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        _env(preset="gsm8k")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith('[data] path = "openai/gsm8k" (name \'main\'): not in the local Hugging Face cache')
    assert "huggingface-cli download openai/gsm8k --repo-type dataset --local-dir DIR" in message


@pytest.mark.parametrize("text, how, regex, expected", [
    ("x \\boxed{1} y \\boxed{\\frac{a}{b}}", "last_boxed", None, "\\frac{a}{b}"),
    ("no box", "last_boxed", None, None),
    ("work\n#### 1,234", "gsm8k", None, "1234"),
    ("no marker", "gsm8k", None, None),
    ("Answer: 42.", "regex", r"Answer: (\d+)", "42"),
    ("  as is  ", "as_is", None, "as is"),
])
def test_answer_extraction(text, how, regex, expected):
    import re

    assert extract_reference(text, how, re.compile(regex) if regex else None) == expected


def test_a_hub_id_is_read_from_the_hub_cache_offline(tmp_path):
    """`huggingface-cli download openai/gsm8k --repo-type dataset` leaves the repo's files in the hub
    cache; datasets alone does not read them offline, the hf source does. (A subprocess: the hub
    library reads HF_HOME when it is imported.)"""
    import subprocess
    import sys

    repo = tmp_path / "hf" / "hub" / "datasets--openai--gsm8k"
    snapshot = _hub_repo_download(repo / "snapshots" / ("a" * 40), {"main": GSM})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    assert snapshot.is_dir()
    code = ("from retrain.config import config_from_dict\nfrom retrain.environments.hf import HFEnvironment\n"
            "from retrain.types import RunContext\n"
            "cfg = config_from_dict({'data': {'source': 'hf', 'preset': 'gsm8k'}, 'eval': {'num_problems': 2}})\n"
            "env = HFEnvironment(ctx=RunContext(config=cfg, registry=None), preset='gsm8k')\n"
            "print(len(env.train), len(env.held_out), env.held_out[0].answer in ('7', '100'))\n")
    import os

    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["6", "2", "True"]


def test_hf_keys_under_another_built_in_source_are_refused_not_ignored(tmp_path):
    with pytest.raises(ConfigError, match=r'^<config>: \[data\] preset = "gsm8k" is read only by source = "hf", but '
                                          r'\[data\] source = "synthetic": set source = "hf", or remove preset\.$'):
        config_from_dict({"data": {"preset": "gsm8k"}})
    with pytest.raises(ConfigError, match=r'\[data\] filters = \{level = \["Level 5"\]\} is read only by source = "hf"'):
        config_from_dict({"data": {"source": "math", "filters": {"level": ["Level 5"]}}})
    config_from_dict({"data": {"source": "my_envs.Custom", "split": "dev"}})  # a custom source may read them
    # a --set checked alone does not know the file's source: the file decides
    from retrain.config import load_config

    path = tmp_path / "run.toml"
    path.write_text('[data]\nsource = "hf"\npreset = "gsm8k"\n')
    assert load_config(path, {"data.preset": "math500"}).data.preset == "math500"


def test_split_slices_as_in_datasets(tmp_path):
    root = _hub_repo_download(tmp_path / "gsm8k", {"main": GSM})
    env = _env(preset="gsm8k", path=str(root), split="train[:4]", test_split="train[-2:]")
    assert [t.prompt for t in env.train] == [GSM["train"][k]["question"] for k in range(4)]
    assert {t.prompt for t in env.held_out} == {GSM["train"][k]["question"] for k in (4, 5)}
    half = _env(preset="gsm8k", path=str(root), split="train[50%:]")
    assert {t.prompt for t in half.train} == {GSM["train"][k]["question"] for k in (3, 4, 5)}
    with pytest.raises(ConfigError, match=r'\[data\] split = "train\[:x\]": expected a split name or a slice'):
        _env(preset="gsm8k", path=str(root), split="train[:x]")
