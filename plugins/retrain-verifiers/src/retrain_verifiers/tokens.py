"""Token bookkeeping for multi-turn episodes: one exact token row per episode, no re-tokenisation.

A row is ``prompt ids (turn 1) + completion 1 + env tokens 1 + completion 2 + ...``. Sampled
tokens are kept as the engine returned them (mask 1, their sampling logprobs). Only the text
the environment adds between turns is tokenised, as the chat template's *delta*: the tail of
the assistant turn the model did not write (e.g. ``"\\n"`` after ``<|im_end|>``) plus the new
user/tool messages and the next generation prompt (mask 0, logprob 0). Earlier turns are never
re-rendered, so the ids the trainer sees are exactly the ids the engine conditioned on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from retrain.errors import RetrainError

_SENTINEL = "\u2063RETRAIN-SENTINEL\u2063"


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))


def plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Chat messages reduced to role + text content (what chat templates of text models read)."""
    return [{"role": m["role"], "content": _text(m.get("content"))} for m in messages]


@dataclass
class TokenRow:
    """One episode's tokens so far."""

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    messages_seen: int = 0  # messages of the conversation already in the row (incl. the last reply)
    turns: int = 0
    last_finish: str = ""

    def context(self) -> list[int]:
        return self.prompt_ids + self.completion_ids


class ChatTokens:
    """Renders the first prompt of an episode and the token delta of each later turn."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self.eos_text = tokenizer.eos_token or ""
        self.eos_id = tokenizer.eos_token_id
        if self.has_template:
            closed = self.render([{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}],
                                 add_generation_prompt=False)
            self._closed_base = closed
            self.assistant_close = closed[closed.rindex(_SENTINEL) + len(_SENTINEL):]

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                  tokenize=False)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def first_prompt(self, messages: list[dict[str, Any]]) -> list[int]:
        """Prompt ids of turn 1: the chat template with a generation prompt (as retrain.prompts does)."""
        from retrain.prompts import render_prompt_ids
        from retrain.types import Task

        return render_prompt_ids(self.tokenizer, Task(prompt=plain_messages(messages), answer=""))

    def turn_delta(self, tail: list[dict[str, Any]], finished_with_eos: bool) -> list[int]:
        """Env tokens between the last sampled completion and the next one."""
        if not self.has_template:
            raise RetrainError("retrain-verifiers: multi-turn environments need a tokenizer with a chat template "
                               "(the environment's messages are rendered with it).")
        base = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}]
        closed = self._closed_base
        extended = self.render(base + plain_messages(tail), add_generation_prompt=True)
        if not extended.startswith(closed):
            raise RetrainError("retrain-verifiers: the tokenizer's chat template re-renders earlier turns when a "
                               "message is appended, so the multi-turn token row cannot be extended exactly.")
        close = self.assistant_close
        if finished_with_eos and self.eos_text and close.startswith(self.eos_text):
            close = close[len(self.eos_text):]  # the model already wrote the end-of-turn token
        return self.encode(close + extended[len(closed):])


class TokenLedger:
    """The token rows of all episodes of one rollout call, keyed by verifiers session (trace id)."""

    def __init__(self, chat: ChatTokens) -> None:
        self.chat = chat
        self.rows: dict[str, TokenRow] = {}

    def prompt_for(self, session: str, messages: list[dict[str, Any]]) -> list[int]:
        """The exact context ids for the next model call of ``session`` given its full conversation."""
        row = self.rows.get(session)
        if row is None:
            row = self.rows[session] = TokenRow(self.chat.first_prompt(messages))
            row.messages_seen = len(messages)
            return row.context()
        seen = row.messages_seen
        if len(messages) <= seen or messages[seen - 1].get("role") != "assistant":
            raise RetrainError("retrain-verifiers: the environment rewrote the conversation between turns "
                               f"(expected the {seen} earlier messages followed by new ones); only append-only "
                               "multi-turn episodes can be trained on exactly.")
        tail = messages[seen:]
        ended_with_eos = bool(row.completion_ids) and row.completion_ids[-1] == self.chat.eos_id
        env_ids = self.chat.turn_delta(tail, finished_with_eos=ended_with_eos)
        row.completion_ids += env_ids
        row.loss_mask += [0] * len(env_ids)
        row.logprobs += [0.0] * len(env_ids)
        row.messages_seen = len(messages)
        return row.context()

    def record(self, session: str, completion_ids: list[int], logprobs: list[float], finish: str) -> None:
        row = self.rows[session]
        row.completion_ids += list(completion_ids)
        row.loss_mask += [1] * len(completion_ids)
        row.logprobs += list(logprobs)
        row.messages_seen += 1  # the assistant reply
        row.turns += 1
        row.last_finish = finish
