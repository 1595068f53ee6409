"""Config: TOML -> typed, validated config; every user-facing message exact."""

from __future__ import annotations

import pytest

from retrain.cli.reference import starter_config
from retrain.config import config_from_dict, dump_toml, load_config, parse_set
from retrain.config.schema import SECTIONS
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
