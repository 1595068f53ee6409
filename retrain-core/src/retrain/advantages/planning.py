"""Planning-token detection: strategic n-grams matched in decoded text, mapped back to tokens.

A completion's tokens are decoded incrementally (a short sliding window, as streaming
detokenisers do, so multi-byte characters and leading-space markers come out right); each token
gets the character span it added to the text. Phrases are matched case-insensitively on word
boundaries with any whitespace between words, overlapping phrases included; every token whose
span overlaps a match is a planning token. The rest are execution tokens.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from retrain.types import Rollouts, RunContext

#: Strategic phrases in the spirit of the HICRA paper (arXiv 2509.03646): deduction,
#: branching, backtracking and verification moves rather than arithmetic.
BUILTIN_PHRASES: tuple[str, ...] = (
    "let me check", "let me verify", "let me double-check", "let me re-check", "let me recheck",
    "let me reconsider", "let me think", "let me try", "let me re-examine", "let me recalculate",
    "let's check", "let's verify", "let's double-check", "let's think", "let's try", "let's consider",
    "let's reconsider", "let's break this down", "double-check", "wait", "hmm", "but wait",
    "another approach", "another way", "alternatively", "on second thought", "i made a mistake",
    "that's not right", "that is not right", "this doesn't make sense", "we need to find",
    "the key is", "the idea is", "notice that", "recall that", "to verify", "to check",
    "step by step", "going back", "instead,",
)


def read_phrases_file(path: str | Path, where: str = "[planning] phrases_file") -> list[str]:
    """One phrase per line; blank lines and lines starting with # are skipped; a tab-separated
    score after the phrase (as `retrain hicra mine` writes) is ignored."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f'{where} = "{path}": no such file. Write one phrase per line, or create it with '
                          "`retrain hicra mine RUN_DIR`.")
    out = []
    from retrain.config import read_utf8

    for line in read_utf8(p, f'{where} = "{path}"').splitlines():
        phrase = line.split("\t", 1)[0].strip()
        if phrase and not phrase.startswith("#"):
            out.append(phrase)
    return out


def resolve_path(path: str, ctx: RunContext | None) -> Path:
    """A relative path is looked up in the working directory, then next to the config file."""
    p = Path(path)
    if p.is_absolute() or p.exists() or ctx is None or ctx.config_path is None:
        return p
    beside = Path(ctx.config_path).parent / p
    return beside if beside.exists() else p


def phrase_pattern(phrases: list[str] | tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive regex finding every phrase on word boundaries, overlaps included.

    The alternation sits in a lookahead, so ``finditer`` tries every start position and a phrase
    that begins inside an earlier match is found too ("so the answer" then "the answer is" in
    "so the answer is 4"); group 1 is the matched phrase (longest first at each position)."""
    alts = []
    for phrase in sorted({p.strip().lower() for p in phrases if p.strip()}, key=len, reverse=True):
        words = phrase.split()
        body = r"\s+".join(re.escape(w) for w in words)
        left = r"(?<![\w])" if re.match(r"\w", phrase) else ""
        right = r"(?![\w])" if re.search(r"\w$", phrase) else ""
        alts.append(left + body + right)
    return re.compile("(?=(" + "|".join(alts) + "))", re.IGNORECASE) if alts else None


def _decoder(tokenizer: Any) -> Any:
    backend = getattr(tokenizer, "backend_tokenizer", None)  # the Rust tokenizer: no Python overhead
    if backend is not None:
        return lambda ids: backend.decode(ids, skip_special_tokens=True)
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


def token_char_spans(ids: list[int], tokenizer: Any) -> tuple[str, list[tuple[int, int]]]:
    """Decode ``ids`` incrementally; return the text and each token's (start, end) in it.

    Tokens that complete a multi-byte character together share the span of that character;
    special tokens get an empty span.
    """
    decode = _decoder(tokenizer)
    text = ""
    spans: list[tuple[int, int]] = [(0, 0)] * len(ids)
    prefix, read = 0, 0  # window start, first token not yet emitted
    prefix_text = ""
    for k in range(len(ids)):
        new_text = decode(ids[prefix:k + 1])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            delta = new_text[len(prefix_text):]
            for j in range(read, k + 1):
                spans[j] = (len(text), len(text) + len(delta))
            text += delta
            prefix, read = read, k + 1
            prefix_text = decode(ids[prefix:read])
    for j in range(read, len(ids)):  # an unfinished character at the end
        spans[j] = (len(text), len(text))
    return text, spans


def planning_row(ids: list[int], tokenizer: Any, pattern: re.Pattern[str] | None) -> list[bool]:
    """Planning flags for one completion's tokens."""
    if pattern is None or not ids or not pattern.search(_decoder(tokenizer)(ids)):
        return [False] * len(ids)  # one decode call instead of two per token for rows without phrases
    text, spans = token_char_spans(ids, tokenizer)
    matches = [m.span(1) for m in pattern.finditer(text)]  # overlapping phrases each give a span
    flags = [False] * len(ids)
    if not matches:
        return flags
    for j, (s, e) in enumerate(spans):
        if e > s and any(s < b and e > a for a, b in matches):
            flags[j] = True
    return flags


class PhraseDetector:
    """Base of phrase-list detectors: ``detect(rollouts, tokenizer) -> mask [N, T] bool``."""

    phrases: list[str]

    def __init__(self, phrases: list[str]) -> None:
        self.phrases = phrases
        self.pattern = phrase_pattern(phrases)

    def detect(self, rollouts: Rollouts, tokenizer: Any) -> torch.Tensor:
        import torch

        valid = rollouts.mask > 0  # [N, T]
        out = torch.zeros_like(valid)  # [N, T] bool
        lengths = [int(v.nonzero().max()) + 1 if v.any() else 0 for v in valid]
        ids = rollouts.completion_ids.tolist()
        for i, n in enumerate(lengths):
            if n:
                out[i, :n] = torch.tensor(planning_row(ids[i][:n], tokenizer, self.pattern))
        return out & valid


class StrategicGramDetector(PhraseDetector):
    """Planning tokens = tokens inside strategic n-grams ("let me check", "another approach", ...)."""

    config_section = "planning"

    def __init__(self, phrases: list[str] | None = None, phrases_file: str = "",
                 ctx: RunContext | None = None) -> None:
        extra = list(phrases or [])
        if phrases_file:
            extra += read_phrases_file(resolve_path(phrases_file, ctx))
        super().__init__([*BUILTIN_PHRASES, *extra])
