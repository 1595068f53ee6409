"""Rendering a task into prompt token ids (chat template when the tokenizer has one)."""

from __future__ import annotations

from typing import Any

from retrain.types import Messages, Task


def task_messages(task: Task, system_prompt: str = "", template: str = "{problem}") -> Messages:
    """The chat messages for a task: a plain-text prompt goes through ``template``."""
    if isinstance(task.prompt, list):
        msgs = list(task.prompt)
    else:
        msgs = [{"role": "user", "content": template.replace("{problem}", task.prompt).replace("{{}}", "{}")}]
    if system_prompt and not any(m.get("role") == "system" for m in msgs):
        msgs = [{"role": "system", "content": system_prompt}, *msgs]
    return msgs


def render_prompt_ids(tokenizer: Any, task: Task, system_prompt: str = "", template: str = "{problem}") -> list[int]:
    """Token ids of the prompt: chat template with a generation prompt, else plain text."""
    msgs = task_messages(task, system_prompt, template)
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer transformers
            ids = ids["input_ids"]
        return list(ids)
    text = "\n\n".join(m["content"] for m in msgs) + "\n"
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])
