"""Exact multi-turn token rows (no verifiers needed): sampled ids kept, env text as template deltas."""

from __future__ import annotations

import pytest
from retrain.errors import RetrainError


@pytest.fixture(scope="module")
def tok():
    pytest.importorskip("transformers")
    from retrain.testing.models import tiny_tokenizer

    return tiny_tokenizer()


def test_first_prompt_is_the_chat_template(tok):
    from retrain_verifiers.tokens import ChatTokens, TokenLedger

    ledger = TokenLedger(ChatTokens(tok))
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "go"}]
    ids = ledger.prompt_for("s1", msgs)
    assert tok.decode(ids) == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\ngo<|im_end|>\n<|im_start|>assistant\n"


def test_second_turn_extends_the_sampled_ids_exactly(tok):
    from retrain_verifiers.tokens import ChatTokens, TokenLedger

    ledger = TokenLedger(ChatTokens(tok))
    msgs = [{"role": "user", "content": "go"}]
    first = ledger.prompt_for("s1", msgs)
    # a sampled completion that a re-tokenisation would not reproduce: "4" then EOS, written as ids
    sampled = tok.convert_tokens_to_ids(["4"]) + [tok.eos_token_id]
    ledger.record("s1", sampled, [-0.5, -0.25], "stop")
    nxt = ledger.prompt_for("s1", msgs + [{"role": "assistant", "content": "4"}, {"role": "user", "content": "higher"}])
    assert nxt[: len(first) + 2] == first + sampled  # earlier ids untouched
    env = nxt[len(first) + 2:]
    assert tok.decode(env) == "\n<|im_start|>user\nhigher<|im_end|>\n<|im_start|>assistant\n"
    row = ledger.rows["s1"]
    assert row.loss_mask == [1, 1] + [0] * len(env)
    assert row.logprobs == [-0.5, -0.25] + [0.0] * len(env)


def test_truncated_turn_gets_the_template_end_of_turn_as_env_tokens(tok):
    from retrain_verifiers.tokens import ChatTokens, TokenLedger

    ledger = TokenLedger(ChatTokens(tok))
    msgs = [{"role": "user", "content": "go"}]
    ledger.prompt_for("s1", msgs)
    ledger.record("s1", tok.convert_tokens_to_ids(["a", "b"]), [-1.0, -1.0], "length")
    ledger.prompt_for("s1", msgs + [{"role": "assistant", "content": "ab"}, {"role": "user", "content": "no"}])
    row = ledger.rows["s1"]
    assert tok.decode(row.completion_ids) == "ab<|im_end|>\n<|im_start|>user\nno<|im_end|>\n<|im_start|>assistant\n"
    assert row.loss_mask[:3] == [1, 1, 0]  # the model did not write <|im_end|>: not trained on


def test_rewritten_conversation_is_refused(tok):
    from retrain_verifiers.tokens import ChatTokens, TokenLedger

    ledger = TokenLedger(ChatTokens(tok))
    ledger.prompt_for("s1", [{"role": "user", "content": "go"}])
    ledger.record("s1", [tok.eos_token_id], [0.0], "stop")
    with pytest.raises(RetrainError, match="rewrote the conversation between turns"):
        ledger.prompt_for("s1", [{"role": "user", "content": "something else"}])
