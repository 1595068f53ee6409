"""Rendering a task into prompt token ids (chat template when the tokenizer has one).

The user message is ``[data] prompt_template`` with ``{problem}`` replaced by the task text
(``{{}}`` in the template is a literal ``{}``, so ``\\boxed{{}}`` renders as ``\\boxed{}``); a
non-empty ``[data] system_prompt`` becomes a system message. Tasks whose prompt is already a
list of chat messages are used as they are (the system prompt is added if they have none).
With a chat template the messages go through ``apply_chat_template(add_generation_prompt=True)``;
without one, the message contents are joined by blank lines.

The rendered prompt is part of a run's identity: :func:`prompt_identity` gives the template,
the system prompt, the chat template's hash and one fingerprint over all three, which the loop
records in the run directory so that evaluations before and after training (and across runs)
can be checked to use the same prompt.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from retrain.types import Messages, Task

DEFAULT_TEMPLATE = "{problem}"


def render_user_text(template: str, problem: str) -> str:
    """``template`` with ``{problem}`` replaced and ``{{}}`` unescaped (the problem text is never touched)."""
    head, sep, tail = template.partition("{problem}")
    unescape = lambda s: s.replace("{{}}", "{}").replace("{{", "{").replace("}}", "}")  # noqa: E731
    return unescape(head) + problem + unescape(tail) if sep else unescape(template) + "\n" + problem


def few_shot_messages(few_shot: list[dict[str, Any]], template: str = DEFAULT_TEMPLATE) -> Messages:
    """``[data] few_shot`` as alternating user/assistant turns (each problem through ``template``)."""
    from retrain.errors import ConfigError

    msgs: Messages = []
    for k, shot in enumerate(few_shot):
        if not (isinstance(shot, dict) and isinstance(shot.get("problem"), str) and isinstance(shot.get("response"), str)
                and set(shot) == {"problem", "response"}):
            raise ConfigError(f"[data] few_shot[{k}] = {shot!r}: expected a table with exactly a problem and a "
                              'response string, e.g. {problem = "Compute $2 + 3$.", response = "\\boxed{5}"}.')
        msgs += [{"role": "user", "content": render_user_text(template, shot["problem"])},
                 {"role": "assistant", "content": shot["response"]}]
    return msgs


def task_messages(task: Task, system_prompt: str = "", template: str = DEFAULT_TEMPLATE,
                  few_shot: list[dict[str, Any]] | None = None) -> Messages:
    """The chat messages for a task: a plain-text prompt goes through ``template``, after the
    ``few_shot`` example turns."""
    if isinstance(task.prompt, list):
        msgs = list(task.prompt)
    else:
        msgs = [*few_shot_messages(few_shot or [], template),
                {"role": "user", "content": render_user_text(template, task.prompt)}]
    if system_prompt and not any(m.get("role") == "system" for m in msgs):
        msgs = [{"role": "system", "content": system_prompt}, *msgs]
    return msgs


def render_prompt_ids(tokenizer: Any, task: Task, system_prompt: str = "", template: str = DEFAULT_TEMPLATE,
                      few_shot: list[dict[str, Any]] | None = None) -> list[int]:
    """Token ids of the prompt: chat template with a generation prompt, else plain text."""
    msgs = task_messages(task, system_prompt, template, few_shot)
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer transformers
            ids = ids["input_ids"]
        return list(ids)
    text = "\n\n".join(m["content"] for m in msgs) + "\n"
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prompt_identity(cfg: Any, tokenizer: Any = None) -> dict[str, Any]:
    """What decides the prompt text: ``{"system_prompt", "prompt_template", "chat_template_sha256",
    "fingerprint"}``. ``cfg`` is a Config (its ``[data]`` section is read); ``tokenizer`` is optional
    (without it the chat template is unknown: ``None``)."""
    data = cfg.data
    chat = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    chat_sha = _sha(chat if isinstance(chat, str) else json.dumps(chat, sort_keys=True)) if chat else None
    identity = {"system_prompt": data.system_prompt, "prompt_template": data.prompt_template,
                "few_shot": list(getattr(data, "few_shot", [])),
                "chat_template_sha256": chat_sha if tokenizer is not None else None,
                "uses_chat_template": bool(chat) if tokenizer is not None else None}
    identity["fingerprint"] = _sha(json.dumps(identity, sort_keys=True))
    return identity
