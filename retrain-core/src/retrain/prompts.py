"""Rendering a task into prompt token ids (chat template when the tokenizer has one).

The user message is ``[data] prompt_template`` with ``{problem}`` replaced by the task text
(``{{}}`` in the template is a literal ``{}``, so ``\\boxed{{}}`` renders as ``\\boxed{}``); a
non-empty ``[data] system_prompt`` becomes a system message. Tasks whose prompt is already a
list of chat messages are used as they are (the system prompt is added if they have none).
``[data] chat_template`` picks the template: ``"auto"`` (the tokenizer's, raw text when it has
none), ``"none"`` (always raw text), a Jinja string, or a file holding one. With a template the
messages go through ``apply_chat_template(add_generation_prompt=True, **chat_template_kwargs)``
(e.g. ``{enable_thinking = false}`` for Qwen3); as raw text the message contents are joined by
blank lines.

The rendered prompt is part of a run's identity: :func:`prompt_identity` gives the template,
the system prompt, the few-shot turns, the chat template setting, its hash and its keyword
arguments, and one fingerprint over all of them, which the loop
records in the run directory so that evaluations before and after training (and across runs)
can be checked to use the same prompt.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
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


def resolve_chat_template(setting: str, tokenizer: Any, search_dirs: tuple[Path, ...] = ()) -> str | None:
    """The Jinja chat template ``[data] chat_template`` selects, or None for raw text.

    ``"auto"``: the tokenizer's (None when it has none); ``"none"``: None; a string with ``{%`` or
    ``{{``: that template; anything else: a file, relative to the working directory or ``search_dirs``.
    """
    from retrain.errors import ConfigError

    if setting == "auto":
        chat = getattr(tokenizer, "chat_template", None)
        if isinstance(chat, dict):  # several named templates: the default one
            chat = chat.get("default")
        return chat or None
    if setting == "none":
        return None
    if "{%" in setting or "{{" in setting:
        return setting
    candidates = [Path(setting).expanduser()] + [d / setting for d in search_dirs]
    file = next((c for c in candidates if c.is_file()), None)
    if file is None:
        raise ConfigError(f'[data] chat_template = "{setting}": not "auto", "none", a Jinja template (with {{% or '
                          f"{{{{) or an existing file (looked in {', '.join(str(c) for c in candidates)}).")
    return file.read_text()


def render_prompt_ids(tokenizer: Any, task: Task, system_prompt: str = "", template: str = DEFAULT_TEMPLATE,
                      few_shot: list[dict[str, Any]] | None = None, *, chat_template: str = "auto",
                      chat_template_kwargs: dict[str, Any] | None = None) -> list[int]:
    """Token ids of the prompt: chat template with a generation prompt, else plain text.

    ``chat_template`` is a ``[data] chat_template`` setting or an already resolved Jinja string."""
    msgs = task_messages(task, system_prompt, template, few_shot)
    jinja = resolve_chat_template(chat_template, tokenizer)
    if jinja:
        ids = tokenizer.apply_chat_template(msgs, chat_template=jinja, add_generation_prompt=True, tokenize=True,
                                            **(chat_template_kwargs or {}))
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer transformers
            ids = ids["input_ids"]
        return list(ids)
    text = "\n\n".join(m["content"] for m in msgs) + "\n"
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def config_dirs(cfg: Any) -> tuple[Path, ...]:
    """Folders besides the working directory where a config's relative files are found (its own)."""
    source = Path(str(getattr(cfg, "source", "")))
    return (source.parent,) if source.is_file() else ()


def render_prompts(cfg: Any, tokenizer: Any, tasks: list[Task]) -> list[list[int]]:
    """Prompt token ids of ``tasks`` as ``cfg``'s ``[data]`` section says (template, system prompt,
    few-shot turns, chat template and its keyword arguments)."""
    d = cfg.data
    jinja = resolve_chat_template(d.chat_template, tokenizer, config_dirs(cfg))
    return [render_prompt_ids(tokenizer, task, d.system_prompt, d.prompt_template, d.few_shot,
                              chat_template=jinja or "none", chat_template_kwargs=d.chat_template_kwargs)
            for task in tasks]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prompt_identity(cfg: Any, tokenizer: Any = None) -> dict[str, Any]:
    """What decides the prompt text: ``{"system_prompt", "prompt_template", "few_shot", "chat_template",
    "chat_template_kwargs", "chat_template_sha256", "uses_chat_template", "fingerprint"}``. ``cfg`` is a Config (its ``[data]`` section is read); ``tokenizer`` is optional
    (without it the chat template is unknown: ``None``)."""
    data = cfg.data
    setting = getattr(data, "chat_template", "auto")
    chat = resolve_chat_template(setting, tokenizer, config_dirs(cfg)) if tokenizer is not None or setting != "auto" \
        else None
    known = tokenizer is not None or setting != "auto"
    identity = {"system_prompt": data.system_prompt, "prompt_template": data.prompt_template,
                "few_shot": list(getattr(data, "few_shot", [])),
                "chat_template": setting if setting in ("auto", "none") else "custom",
                "chat_template_kwargs": dict(getattr(data, "chat_template_kwargs", {})),
                "chat_template_sha256": (_sha(chat) if chat else None) if known else None,
                "uses_chat_template": bool(chat) if known else None}
    identity["fingerprint"] = _sha(json.dumps(identity, sort_keys=True))
    return identity
