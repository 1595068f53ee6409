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
