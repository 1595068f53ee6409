"""Config: TOML -> typed, validated config; every user-facing message exact."""

from __future__ import annotations

from typing import Annotated

import pytest

from retrain.cli.reference import starter_config
from retrain.config import config_from_dict, dump_toml, load_config, parse_set
from retrain.config.schema import SECTIONS
from retrain.config.values import Bounds
from retrain.errors import ConfigError


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_defaults_and_typed_access(tmp_path):
    cfg = load_config(write(tmp_path, "[training]\nmax_steps = 5\nlr = 1\n"))
    assert cfg.training.max_steps == 5
    assert cfg.training.lr == 1.0 and isinstance(cfg.training.lr, float)  # int accepted for a float
    assert cfg.training.batch_size == 8  # default
    assert cfg.section("resume") == {"from": ""}  # TOML name of a keyword key
    assert set(cfg.to_dict()) == set(SECTIONS)


def test_unknown_section_suggests_the_nearest(tmp_path):
    path = write(tmp_path, "[trainig]\nmax_steps = 5\n")
    assert error_of(load_config, path) == f"{path}: unknown section [trainig]. Did you mean [training]?"


def test_unknown_section_without_a_near_name_lists_sections():
    msg = error_of(config_from_dict, {"zzz": {}}, source="r.toml", plugin_sections=set())
    assert msg.startswith("r.toml: unknown section [zzz]. Core sections: [backend], [model], [algorithm],")
    assert msg.endswith("[resume], [plugins].")


def test_unknown_section_of_a_missing_first_party_plugin_says_what_to_install():
    msg = error_of(config_from_dict, {"vllm": {"gpu_memory": 0.5}}, source="r.toml", plugin_sections=set(),
                   section_hints={"vllm": "it belongs to retrain-vllm, which is not installed: pip install retrain-vllm"})
    assert msg == ("r.toml: section [vllm] cannot be used: it belongs to retrain-vllm, which is not installed: "
                   "pip install retrain-vllm.")


def test_unknown_key_suggests_the_nearest(tmp_path):
    path = write(tmp_path, "[training]\nmax_step = 5\n")
    assert error_of(load_config, path) == f"{path}: unknown key [training] max_step. Did you mean max_steps?"


def test_unknown_key_without_a_near_name_lists_keys():
    assert error_of(config_from_dict, {"gtpo": {"zzz": 1}}, source="r.toml") == \
        "r.toml: unknown key [gtpo] zzz. Valid keys: beta."


def test_wrong_type_names_key_expected_and_given_type():
    assert error_of(config_from_dict, {"training": {"lr": "fast"}}, source="r.toml") == \
        'r.toml: [training] lr = "fast": expected number, got string.'
    assert error_of(config_from_dict, {"training": {"max_steps": True}}, source="r.toml") == \
        "r.toml: [training] max_steps = true: expected integer, got boolean."
    assert error_of(config_from_dict, {"data": {"levels": [1, "2"]}}, source="r.toml") == \
        'r.toml: [data] levels = [1, "2"]: expected list of integer, got list.'
    assert error_of(config_from_dict, {"training": 3}, source="r.toml") == \
        "r.toml: training must be a table [training], got integer."


def test_choices_are_enforced_with_a_suggestion():
    assert error_of(config_from_dict, {"algorithm": {"loss": "ppo2"}}, source="r.toml") == \
        'r.toml: [algorithm] loss = "ppo2": must be one of ppo, is, gspo, cispo. Did you mean "ppo"?'


def test_value_ranges():
    assert error_of(config_from_dict, {"training": {"max_steps": 0}}, source="r.toml") == \
        "r.toml: [training] max_steps = 0: must be at least 1."
    assert error_of(config_from_dict, {"training": {"top_p": 1.5}}, source="r.toml") == \
        "r.toml: [training] top_p = 1.5: must be in (0, 1]."


def test_missing_and_invalid_files(tmp_path):
    missing = tmp_path / "nope.toml"
    assert error_of(load_config, missing) == f"{missing}: no such config file. Create one with `retrain init`."
    bad = write(tmp_path, "[training]\nmax_steps = \n")
    assert error_of(load_config, bad) == (f"{bad}: invalid TOML: Invalid value (at line 2, column 13).")


def test_parse_set_values_are_toml_with_string_fallback():
    assert parse_set(["training.lr=1e-5", "logging.loggers=[\"jsonl\"]", "data.name=basic_arithmetic",
                      "eval.at_start=false", "environment.args.level=3"]) == {
        "training.lr": 1e-5, "logging.loggers": ["jsonl"], "data.name": "basic_arithmetic",
        "eval.at_start": False, "environment.args.level": 3}


def test_parse_set_rejects_items_without_section_key_value():
    assert error_of(parse_set, ["training"]) == \
        "--set training: expected section.key=value, e.g. --set training.lr=1e-5."
    assert error_of(parse_set, ["lr=1"]) == "--set lr=1: expected section.key=value, e.g. --set training.lr=1e-5."


def test_overrides_apply_and_errors_name_the_override(tmp_path):
    path = write(tmp_path, "[training]\nmax_steps = 5\n")
    cfg = load_config(path, {"training.seed": 7, "environment.args.level": 3})
    assert cfg.training.seed == 7 and cfg.training.max_steps == 5
    assert cfg.environment.args == {"level": 3}
    assert error_of(load_config, path, {"training.max_step": 5}) == \
        "--set training.max_step: unknown key [training] max_step. Did you mean max_steps?"
    assert error_of(load_config, path, {"training.lr": "abc"}) == \
        '--set training.lr: [training] lr = "abc": expected number, got string.'


def test_plugin_sections_are_kept_when_plugins_are_unknown_and_checked_when_known():
    cfg = config_from_dict({"hicra": {"alpha": 0.3}})
    assert cfg.section("hicra") == {"alpha": 0.3}
    assert config_from_dict({"hicra": {"alpha": 0.3}}, plugin_sections={"hicra"}).section("hicra") == {"alpha": 0.3}
    assert error_of(config_from_dict, {"hicar": {}}, source="r.toml", plugin_sections={"hicra"}) == \
        "r.toml: unknown section [hicar]. Did you mean [hicra]?"


def test_resolved_config_round_trips_through_toml(tmp_path):
    cfg = load_config(write(tmp_path, '[training]\nlr = 2e-5\n[environment]\nargs = {a = 1, b = "x"}\n'
                                      '[campaign]\nconditions = [{name = "c1", advantage_mode = "grpo"}]\n'))
    again = load_config(write(tmp_path, cfg.to_toml(), "resolved.toml"))
    assert again.to_dict() == cfg.to_dict()


def test_secrets_are_redacted_in_dumps():
    text = dump_toml({"judge": {"api_key": "sk-123", "api_key_env": "OPENAI_API_KEY"}})
    assert 'api_key = "sk-123"' in text
    cfg = config_from_dict({"judge": {"api_key": "sk-123", "api_key_env": "OPENAI_API_KEY"}})
    assert cfg.to_dict()["judge"] == {"api_key": "***", "api_key_env": "OPENAI_API_KEY"}


def test_starter_config_is_valid_toml_that_loads_to_the_defaults(tmp_path):
    text = starter_config()
    cfg = load_config(write(tmp_path, text))
    assert cfg.to_dict() == config_from_dict({}).to_dict()
    for section, cls in SECTIONS.items():  # every key is present, active or commented out
        for key in cfg.section(section):
            assert f"\n{key} = " in text or f"\n# {key} = " in text, (section, key)


# -- value checks (retrain.config.values: one checker for core keys and plugin options) -----------------
@pytest.mark.parametrize("section,key,value,message", [
    ("training", "lr", float("nan"), "[training] lr = nan: must be a finite number."),
    ("training", "lr", float("inf"), "[training] lr = inf: must be a finite number."),
    ("training", "lr", -1e-5, "[training] lr = -1e-05: must be at least 0."),
    ("training", "temperature", float("nan"), "[training] temperature = nan: must be a finite number."),
    ("training", "temperature", 0, "[training] temperature = 0: must be > 0 (sampling is stochastic; use [eval] "
                                   "for greedy decoding)."),
    ("training", "max_grad_norm", float("nan"), "[training] max_grad_norm = nan: must be a finite number."),
    ("algorithm", "clip_eps_low", -0.1, "[algorithm] clip_eps_low = -0.1: must be in [0, 1]."),
    ("training", "save_every", -1, "[training] save_every = -1: must be at least 0."),
    ("training", "keep_checkpoints", 0, "[training] keep_checkpoints = 0: must be at least 1."),
    ("training", "warmup_steps", -5, "[training] warmup_steps = -5: must be at least 0."),
    ("eval", "num_problems", 0, "[eval] num_problems = 0: must be at least 1."),
    ("backend", "micro_batch_size", -1, "[backend] micro_batch_size = -1: must be at least 0."),
    ("backend", "micro_batch_size", "big", '[backend] micro_batch_size = "big": expected integer or "auto", got string.'),
    ("reward", "workers", 0, "[reward] workers = 0: must be at least 1."),
    ("eval", "pass_k", 0, "[eval] pass_k = 0: must be at least 1."),
    ("backend", "logprob_chunk", 0, "[backend] logprob_chunk = 0: must be at least 1."),
    ("training", "seed", 12345678901234567890,
     "[training] seed = 12345678901234567890: does not fit in a 64-bit integer (TOML's integer range)."),
    ("training", "top_p", 0, "[training] top_p = 0: must be in (0, 1]."),
    ("campaign", "seeds", [1, float("nan")], "[campaign] seeds = [1, nan]: expected list of integer, got list."),
])
def test_out_of_range_and_non_finite_values(section, key, value, message):
    assert error_of(config_from_dict, {section: {key: value}}, source="r.toml") == f"r.toml: {message}"


def test_group_size_one_is_refused_for_group_relative_advantages():
    assert error_of(config_from_dict, {"training": {"group_size": 1}}, source="r.toml") == (
        "r.toml: [training] group_size = 1: advantage_mode maxrl compares the samples of one prompt, so with 1 "
        "every advantage is 0 and nothing trains; use group_size >= 2.")
    # a custom advantage may use one sample per prompt
    cfg = config_from_dict({"training": {"group_size": 1}, "algorithm": {"advantage_mode": "my.adv"}})
    assert cfg.training.group_size == 1


def test_devices_must_name_a_known_device():
    assert error_of(config_from_dict, {"backend": {"devices": "fpga"}}, source="r.toml") == (
        'r.toml: [backend] devices = "fpga": unknown device. Expected auto, cpu, cpu:N (N processes), gpu:0 or gpu:0,1.')
    assert error_of(config_from_dict, {"backend": {"devices": "gpux"}}, source="r.toml").endswith(
        'Did you mean "gpu"?')
    for ok in ("auto", "cpu", "cpu:2", "gpu", "gpu:0", "gpu:0,1", "cuda:1", "mps"):
        assert config_from_dict({"backend": {"devices": ok}}).backend.devices == ok


def test_non_utf8_config_names_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[training]\n# caf\xe9\nmax_steps = 5\n")
    assert error_of(load_config, path) == f"{path}: not UTF-8 text (byte 0xe9 on line 2); save the file as UTF-8."


def test_plugin_options_use_the_same_checker():
    from typing import Annotated

    from retrain.components import Option, check_option_value
    from retrain.config.values import Bounds

    opt = Option("scale", "float", 1.0, False, float)
    assert check_option_value(opt, "x") == '= "x": expected number, got string.'
    assert check_option_value(opt, float("nan")) == "= nan: must be a finite number."
    ranged = Option("p", "", 0.5, False, Annotated[float, Bounds(gt=0, le=1)])
    assert check_option_value(ranged, 2) == "= 2: must be in (0, 1]."
    assert check_option_value(ranged, 1) == ""
    assert check_option_value(Option("n", "", 1, False, int | None), None) == ""
    assert check_option_value(Option("n", "", 1, False, int | None), "a") == '= "a": expected integer, got string.'


def test_reference_names_types_as_errors_do():
    from retrain.cli.reference import config_reference_markdown

    text = config_reference_markdown()
    assert "| `lr` | number | `1e-05` | AdamW learning rate (constant after warm-up). Range: at least 0. |" in text
    types = {line.split(" | ")[1] for line in text.splitlines() if line.startswith("| `")}
    assert types == {"string", "integer", "number", "boolean", "table", "list of string", "list of integer",
                     "list of table", 'boolean or "auto"',  # [backend] compile: true, false or "auto"
                     'integer or "auto"'}  # [backend] micro_batch_size


class RangedFactory:
    """A factory with a ranged option (module level: its annotations resolve as a plugin's do)."""

    def __init__(self, temperature: Annotated[float, Bounds(gt=0)] = 1.0) -> None:
        self.temperature = temperature


def test_a_plugin_factorys_annotated_range_is_enforced():
    from retrain.components import check_option_value, factory_options

    (opt,) = factory_options(RangedFactory)
    assert opt.type == "number"
    assert check_option_value(opt, 0) == "= 0: must be > 0."
    assert check_option_value(opt, 0.5) == ""
