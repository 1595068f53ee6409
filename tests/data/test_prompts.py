"""Prompt rendering (chat template or plain text) and the prompt's recorded identity."""

from __future__ import annotations

from retrain.config import config_from_dict
from retrain.prompts import prompt_identity, render_prompt_ids, render_user_text, task_messages
from retrain.testing.models import tiny_tokenizer
from retrain.types import Task

DEFAULT = config_from_dict({}).data.prompt_template


def test_default_template_renders_a_literal_box() -> None:
    assert render_user_text(DEFAULT, "Compute $2 + 3$.") == \
        "Compute $2 + 3$.\nPut your final answer within \\boxed{}."
    assert render_user_text("Q: {problem} A:", "uses {{}} and {x}") == "Q: uses {{}} and {x} A:"  # problem untouched


def test_messages_system_prompt_and_chat_tasks() -> None:
    task = Task("1+1?", "2")
    assert task_messages(task, "Be brief.", "{problem}") == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}]
    chat = Task([{"role": "system", "content": "own"}, {"role": "user", "content": "hi"}], "")
    assert task_messages(chat, "Be brief.", DEFAULT) == chat.prompt  # kept as is


def test_chat_template_and_plain_rendering() -> None:
    tok = tiny_tokenizer()
    ids = render_prompt_ids(tok, Task("1+1?", "2"), "S", "{problem}")
    assert tok.decode(ids) == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n"
    tok.chat_template = None
    assert render_prompt_ids(tok, Task("1+1?", "2"), "S", "{problem}") == tok("S\n\n1+1?\n")["input_ids"]


def test_prompt_identity_changes_with_what_decides_the_prompt() -> None:
    base = config_from_dict({})
    tok = tiny_tokenizer()
    a = prompt_identity(base, tok)
    assert a == prompt_identity(config_from_dict({}), tiny_tokenizer())  # stable
    assert a["prompt_template"] == DEFAULT and a["uses_chat_template"] is True and len(a["fingerprint"]) == 16
    assert prompt_identity(config_from_dict({"data": {"system_prompt": "x"}}), tok)["fingerprint"] != a["fingerprint"]
    assert prompt_identity(config_from_dict({"data": {"prompt_template": "{problem}"}}), tok)["fingerprint"] != \
        a["fingerprint"]
    tok.chat_template = tok.chat_template + " "
    assert prompt_identity(base, tok)["fingerprint"] != a["fingerprint"]
    assert prompt_identity(base)["chat_template_sha256"] is None


# -- [data] chat_template and chat_template_kwargs ----------------------------------------------------
# A Qwen3-style switch: the template reads a variable that only chat_template_kwargs sets.
THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}{% endif %}")


def _data(**data):
    return config_from_dict({"data": {"prompt_template": "{problem}", **data}})


def test_chat_template_none_renders_raw_text_even_when_the_tokenizer_has_one() -> None:
    from retrain.prompts import render_prompts

    tok = tiny_tokenizer()
    (ids,) = render_prompts(_data(chat_template="none", system_prompt="S"), tok, [Task("1+1?", "2")])
    assert ids == tok("S\n\n1+1?\n")["input_ids"]  # contents joined by blank lines, no chat markup
    (auto,) = render_prompts(_data(system_prompt="S"), tok, [Task("1+1?", "2")])
    assert tok.decode(auto).startswith("<|im_start|>system\nS<|im_end|>")  # "auto" = the tokenizer's


def test_a_jinja_string_or_file_replaces_the_tokenizer_template_and_kwargs_reach_it(tmp_path, monkeypatch) -> None:
    from retrain.prompts import render_prompts

    tok = tiny_tokenizer()
    task = [Task("hi", "")]
    (plain,) = render_prompts(_data(chat_template=THINKING_TEMPLATE), tok, task)
    assert tok.decode(plain) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    (off,) = render_prompts(_data(chat_template=THINKING_TEMPLATE,
                                  chat_template_kwargs={"enable_thinking": False}), tok, task)
    assert tok.decode(off) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think></think>"
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "qwen3.jinja").write_text(THINKING_TEMPLATE)
    config_file = tmp_path / "conf" / "run.toml"
    config_file.write_text('[data]\nprompt_template = "{problem}"\nchat_template = "qwen3.jinja"\n'
                           "chat_template_kwargs = {enable_thinking = false}\n")
    monkeypatch.chdir(tmp_path)  # the file is found next to the config, not only in the working directory
    from retrain.config import load_config

    (from_file,) = render_prompts(load_config(config_file), tok, task)
    assert from_file == off


def test_a_missing_chat_template_file_is_one_line_naming_the_key(tmp_path, monkeypatch) -> None:
    import pytest
    from retrain.errors import ConfigError
    from retrain.prompts import render_prompts

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r'^\[data\] chat_template = "nope.jinja": not "auto", "none", a Jinja '):
        render_prompts(_data(chat_template="nope.jinja"), tiny_tokenizer(), [Task("hi", "")])


def test_prompt_identity_records_the_chat_template_setting_and_kwargs() -> None:
    tok = tiny_tokenizer()
    auto = prompt_identity(_data(), tok)
    none = prompt_identity(_data(chat_template="none"), tok)
    custom = prompt_identity(_data(chat_template=THINKING_TEMPLATE), tok)
    off = prompt_identity(_data(chat_template=THINKING_TEMPLATE, chat_template_kwargs={"enable_thinking": False}), tok)
    assert (auto["chat_template"], none["chat_template"], custom["chat_template"]) == ("auto", "none", "custom")
    assert none["uses_chat_template"] is False and none["chat_template_sha256"] is None
    assert custom["chat_template_sha256"] != auto["chat_template_sha256"]
    assert off["chat_template_kwargs"] == {"enable_thinking": False}
    assert len({auto["fingerprint"], none["fingerprint"], custom["fingerprint"], off["fingerprint"]}) == 4
