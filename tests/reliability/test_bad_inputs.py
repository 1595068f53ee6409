"""The standing bad-input check: malformed configs and data files, each one line on stderr, exit 2.

Every row is a real file handed to the real CLI entry point (``retrain.cli.main.main``, the
function behind the console script): config rows through ``retrain config`` (which loads no
model), data and model rows through ``retrain RUN.toml`` with the tiny test model. Each asserts
exit code 2, exactly one stderr line that starts with ``error:`` and contains the expected text,
and no traceback. A handful of rows also go through the console script in a subprocess. After
the run rows, a good run with the same run name must land in the same run directory: nothing a
failed start left behind may shadow or break it. docs/reliability.md lists what this holds.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from retrain.cli.main import main

PROGRESS = re.compile(r"^Loading weights: .*it/s\]")


@dataclass
class Bad:
    id: str
    toml: str  # the config (or extra TOML for run rows); {d} = the case folder, {model} = the tiny model
    expect: str  # text the one error line must contain
    files: dict[str, str | bytes] = field(default_factory=dict)  # other files in the case folder
    args: tuple[str, ...] = ()  # extra CLI arguments
    name: str = ""  # for key rows: "[section] key = ", which the error line must contain too


def key(section: str, name: str, value: str, expect: str = "") -> Bad:
    """A config with one bad key; the error line must name the key (and contain ``expect``)."""
    return Bad(f"{section}.{name}={value}", f"[{section}]\n{name} = {value}\n", expect, name=f"[{section}] {name} = ")


# -- configs: `retrain config FILE` (no model is loaded) --------------------------------------------------
CONFIG_ROWS: list[Bad] = [
    # non-finite and out-of-range numbers (issue 14, item 14)
    key("training", "lr", "nan"), key("training", "lr", "inf"), key("training", "lr", "-inf"),
    key("training", "lr", "-1e-5"), key("training", "lr", '"fast"'),
    key("training", "temperature", "nan"), key("training", "temperature", "0"),
    key("training", "temperature", "-0.5"),
    key("training", "max_grad_norm", "nan"), key("training", "max_grad_norm", "0"),
    key("algorithm", "clip_eps_low", "-0.1"), key("algorithm", "clip_eps_high", "-1"),
    key("training", "save_every", "-1"), key("training", "keep_checkpoints", "0"),
    key("training", "warmup_steps", "-1"), key("eval", "num_problems", "0"),
    key("backend", "micro_batch_size", "-2"), key("reward", "workers", "0"),
    key("eval", "pass_k", "0"), key("backend", "logprob_chunk", "0"),
    key("training", "seed", "12345678901234567890"), key("training", "seed", "-1"),
    key("training", "group_size", "0"), key("training", "batch_size", "0"),
    key("training", "max_steps", "0"), key("training", "max_tokens", "0"),
    key("training", "top_p", "1.5"), key("training", "top_p", "0"),
    key("model", "lora_rank", "-1"), key("model", "lora_dropout", "1.0"), key("model", "lora_alpha", "0"),
    key("algorithm", "kl_coef", "-0.1"), key("algorithm", "tis_cap", "0"),
    key("training", "weight_decay", "-0.01"), key("inference", "timeout", "0"),
    key("inference", "retries", "-1"), key("inference", "max_concurrency", "0"),
    key("eval", "every", "-1"), key("eval", "max_tokens", "-5"),
    key("backpressure", "margin", "0"), key("sepa", "ema_decay", "1.0"),
    key("squeeze", "energy", "1.5"), key("environment", "max_turns", "0"),
    key("logging", "samples_every", "-1"), key("reward", "judge_timeout", "nan"),
    # types
    key("training", "max_steps", "true"), key("training", "max_steps", "2.5"),
    key("data", "levels", '["2"]'), key("logging", "loggers", '"jsonl"'),
    key("campaign", "seeds", "[1, 2.5]"), key("model", "trust_remote_code", '"yes"'),
    key("backend", "compile", '"yes"', 'expected boolean or "auto", got string.'),
    key("backend", "compile", "1", 'expected boolean or "auto", got integer.'),
    # choices, cross-key checks, devices
    key("algorithm", "loss", '"ppo2"', 'Did you mean "ppo"?'), key("backend", "dtype", '"fp8"', "must be one of"),
    Bad("group_size=1", "[training]\ngroup_size = 1\n", "[training] group_size = 1: advantage_mode maxrl"),
    Bad("min_batch>max_batch", "[backpressure]\nmin_batch = 8\nmax_batch = 4\n", "min_batch = 8 is above max_batch = 4"),
    key("backend", "devices", '"fpga"', "unknown device"), key("backend", "devices", '"gpu:a"', "unknown device"),
    key("backend", "devices", '"cpu:0"', "unknown device"),
    # names, sections and keys
    Bad("unknown-section", "[trainig]\nmax_steps = 5\n", "unknown section [trainig]. Did you mean [training]?"),
    Bad("unknown-key", "[training]\nmax_step = 5\n", "unknown key [training] max_step. Did you mean max_steps?"),
    Bad("section-not-table", "training = 3\n", "training must be a table [training], got integer."),
    Bad("unknown-advantage", '[algorithm]\nadvantage_mode = "maxrll"\n', '"maxrll"'),
    Bad("unknown-reward", '[reward]\ntype = "mathh"\n', '"mathh"'),
    Bad("unknown-data-source", '[data]\nsource = "synthetc"\n', '"synthetc"'),
    Bad("plugin-option-type", '[maxrl]\neps = "small"\n', 'eps = "small": expected number, got string.'),
    Bad("plugin-option-nan", "[maxrl]\neps = nan\n", "eps = nan: must be a finite number."),
    Bad("plugin-option-unknown", "[maxrl]\nepsilon = 0.1\n", "unknown option epsilon"),
    # files
    Bad("non-utf8", b"[training]\n# caf\xe9\nmax_steps = 5\n", "not UTF-8 text (byte 0xe9 on line 2)"),  # type: ignore[arg-type]
    Bad("invalid-toml", "[training]\nmax_steps = \n", "invalid TOML"),
    Bad("duplicate-key", "[training]\nlr = 1\nlr = 2\n", "invalid TOML"),
    Bad("set-nan", "", "--set training.lr: [training] lr = nan: must be a finite number.", args=("--set", "training.lr=nan")),
    Bad("set-syntax", "", "--set training: expected section.key=value", args=("--set", "training")),
]


def _write_case(folder: Path, case: Bad, model: Path | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in case.files.items():
        (folder / name).write_bytes(body if isinstance(body, bytes) else body.encode())
    cfg = folder / "run.toml"
    text = case.toml if isinstance(case.toml, bytes) else case.toml.format(d=folder, model=model).encode()
    cfg.write_bytes(text)
    return cfg


def _one_error_line(err: str, expect: str) -> str:
    # transformers draws a progress bar while the model loads (run rows whose mistake is found once the
    # model is known, e.g. a prompt longer than its context); it is not a message, every other line is
    lines = [line for line in err.splitlines() if line.strip() and not PROGRESS.search(line)]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expect in lines[0], lines[0]
    return lines[0]


def _run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    assert info.value.code == 2, out.err
    return out.err


@pytest.mark.parametrize("case", CONFIG_ROWS, ids=[c.id for c in CONFIG_ROWS])
def test_bad_config(case: Bad, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write_case(tmp_path, case)
    err = _run_main(["config", str(cfg), *case.args], capsys)
    line = _one_error_line(err, case.expect)
    assert case.name in line, line


def test_missing_and_directory_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _one_error_line(_run_main(["config", str(tmp_path / "nope.toml")], capsys), "no such config file")
    (tmp_path / "dir.toml").mkdir()
    _one_error_line(_run_main(["config", str(tmp_path / "dir.toml")], capsys), "It is a directory.")


# -- data and model files: `retrain RUN.toml` with the tiny model ------------------------------------------
RUN_BASE = """
[model]
model = "{model}"
lora_rank = 0
[training]
max_steps = 1
batch_size = 2
group_size = 2
max_tokens = 4
[logging]
log_dir = "{d}/../runs"
run_name = "shared"
loggers = ["jsonl"]
[eval]
at_start = false
at_end = false
"""
JSONL = '[data]\nsource = "jsonl"\npath = "{d}/tasks.jsonl"\nprompt_template = "{{problem}}"\n[reward]\ntype = "match"\n'
GOOD_ROWS = "".join(json.dumps({"prompt": str(i), "answer": str(i)}) + "\n" for i in range(8))

RUN_ROWS: list[Bad] = [
    Bad("jsonl-no-answer", JSONL, 'tasks.jsonl:2: the row has no "answer"',
        {"tasks.jsonl": '{"prompt": "1", "answer": "1"}\n{"prompt": "2"}\n'}),
    Bad("jsonl-non-utf8", JSONL, "not UTF-8 text", {"tasks.jsonl": b'{"prompt": "caf\xe9", "answer": "1"}\n'}),
    Bad("jsonl-invalid-json", JSONL, "tasks.jsonl:1: invalid JSON", {"tasks.jsonl": '{"prompt": \n'}),
    Bad("jsonl-answer-not-string", JSONL, "tasks.jsonl:1: expected", {"tasks.jsonl": '{"prompt": "1", "answer": 1}\n'}),
    Bad("jsonl-empty", JSONL, "the file has no rows", {"tasks.jsonl": "\n"}),
    Bad("jsonl-missing", '[data]\nsource = "jsonl"\npath = "{d}/nope.jsonl"\n', "no such file"),
    Bad("math-invalid-json", '[data]\nsource = "math"\npath = "{d}/math.json"\n', "math.json: invalid JSON",
        {"math.json": "[{"}),
    Bad("hf-unknown-preset", '[data]\nsource = "hf"\npreset = "gsm9k"\n',
        '[data] preset = "gsm9k": no such preset. Did you mean "gsm8k"?'),
    Bad("prompt-longer-than-context", JSONL, "tasks.jsonl:3: the prompt is 1119 tokens; with max_tokens 4 that exceeds "
        "the model's context of 1024 tokens",
        {"tasks.jsonl": "".join(json.dumps({"prompt": "7" * 1100 if i == 2 else str(i), "answer": "7"}) + "\n"
                                for i in range(4))}),  # distinct prompts: duplicates are refused first
    Bad("gpu-on-cpu-host", JSONL + '[backend]\ndevices = "gpu:0"\n', 'devices = "gpu:0": this machine has no CUDA GPU',
        {"tasks.jsonl": GOOD_ROWS}),
    Bad("two-gpus-on-cpu-host", JSONL + '[backend]\ndevices = "gpu:0,1"\n',
        'devices = "gpu:0,1": this machine has no CUDA GPU', {"tasks.jsonl": GOOD_ROWS}),  # before torchrun starts
    Bad("mps-on-linux", JSONL + '[backend]\ndevices = "mps"\n', 'devices = "mps": this machine has no MPS device',
        {"tasks.jsonl": GOOD_ROWS}),
    Bad("combo-weight-nan", JSONL.replace('type = "match"', 'type = "combo"\nterms = [{{type = "match", weight = nan}}]'),
        "[reward] terms[0]: weight = nan: must be a finite number.", {"tasks.jsonl": GOOD_ROWS}),
    Bad("phrases-file-non-utf8", JSONL + '[algorithm]\ntransform_mode = "gtpo_sepa"\n[planning]\nphrases_file = '
        '"{d}/phrases.txt"\n', "not UTF-8 text", {"tasks.jsonl": GOOD_ROWS, "phrases.txt": b"let me \xff\n"}),
]
MODEL_ROWS: list[tuple[str, str | bytes, str]] = [  # (id, config.json contents, expected text)
    ("config-json-garbage", b"\x00\x01garbage", "config.json is not valid JSON"),
    ("config-json-not-utf8", b"\xff\xfe{}", "config.json: not UTF-8 text"),
    ("config-json-truncated", '{"model_type": "llama", ', "config.json is not valid JSON"),
    ("config-json-no-model-type", '{"hidden_size": 64}', "config.json has no model_type"),
    ("config-json-a-list", "[1, 2]", "config.json has no model_type"),
]


@pytest.fixture(scope="module")
def run_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_runs")


@pytest.mark.parametrize("case", RUN_ROWS, ids=[c.id for c in RUN_ROWS])
def test_bad_data(case: Bad, run_root: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write_case(run_root / case.id, Bad(case.id, RUN_BASE + case.toml, case.expect, case.files), tiny_model)
    line = _one_error_line(_run_main([str(cfg)], capsys), case.expect)
    assert not line.startswith("error: ["), f"a line that names a section names its file too: {line}"


#: Rows whose mistake is in [data] alone: reported before any model loads (the environment is built first).
DATA_ONLY_ROWS = [c for c in RUN_ROWS if c.id.startswith(("jsonl-", "math-", "hf-"))]


@pytest.mark.parametrize("case", DATA_ONLY_ROWS, ids=[c.id for c in DATA_ONLY_ROWS])
def test_bad_data_fails_before_the_model_is_touched(case: Bad, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The model folder does not exist: reading it would make the error about the model instead."""
    cfg = _write_case(tmp_path, Bad(case.id, RUN_BASE + case.toml, case.expect, case.files), tmp_path / "no-model")
    _one_error_line(_run_main([str(cfg)], capsys), case.expect)


@pytest.mark.parametrize("name,config_json,expect", MODEL_ROWS, ids=[m[0] for m in MODEL_ROWS])
def test_corrupt_model_folder(name: str, config_json: str | bytes, expect: str, run_root: Path, tiny_model: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    model = run_root / name / "model"
    shutil.copytree(tiny_model, model)
    (model / "config.json").write_bytes(config_json if isinstance(config_json, bytes) else config_json.encode())
    cfg = _write_case(run_root / name, Bad(name, RUN_BASE + JSONL, expect, {"tasks.jsonl": GOOD_ROWS}), model)
    _one_error_line(_run_main([str(cfg)], capsys), expect)


def test_failed_starts_leave_nothing_that_breaks_a_later_run(run_root: Path, tiny_model: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Every run row above used run_name "shared": a good run afterwards gets runs/shared itself."""
    good = _write_case(run_root / "good", Bad("good", RUN_BASE + JSONL, "", {"tasks.jsonl": GOOD_ROWS}), tiny_model)
    with pytest.raises(SystemExit) as info:
        main([str(good)])
    assert info.value.code == 0
    runs = run_root / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["shared"]
    assert [json.loads(x)["step"] for x in (runs / "shared" / "metrics.jsonl").read_text().splitlines()] == [1]


# -- a handful through the console script itself ------------------------------------------------------------
SUBPROCESS_ROWS = ["training.lr=nan", "training.seed=12345678901234567890", "non-utf8", "group_size=1",
                   "plugin-option-type"]


@pytest.mark.parametrize("row", SUBPROCESS_ROWS)
def test_console_script(row: str, tmp_path: Path) -> None:
    case = next(c for c in CONFIG_ROWS if c.id == row)
    cfg = _write_case(tmp_path, case)
    proc = subprocess.run([str(Path(sys.executable).with_name("retrain")), "config", str(cfg), *case.args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc.stderr, case.expect)


def test_the_table_is_at_least_sixty_rows() -> None:
    assert len(CONFIG_ROWS) + 2 + len(RUN_ROWS) + len(MODEL_ROWS) >= 60
