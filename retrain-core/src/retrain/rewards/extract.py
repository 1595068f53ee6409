"""Answer extraction and normalisation for verifiable rewards.

Extraction order (``extract_answer``):

1. the content of the LAST complete ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces and
   escaped braces (``\\{``) handled; ``\\boxed 5`` (no braces) works too;
2. fallback ``"answer_is"``: the text after the last "answer is" / "answer:" (up to the end of
   the line or sentence);
3. fallback ``"last_number"``: (2), then the last number in the response (``-3``, ``2.5``, ``3/4``,
   ``1,000``).

``fallback = "none"`` accepts boxed answers only (the strict MATH convention).
"""

from __future__ import annotations

import re

FALLBACKS = ("none", "answer_is", "last_number")

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_ANSWER_IS_RE = re.compile(r"answer\s*(?:is|:)\s*:?\s*(.+?)(?:\n|(?<!\d)\.(?!\d)|$)", re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the brace group opening at ``text[start] == "{"`` and the index after it."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            i += 2  # an escaped brace is content, not structure
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
        i += 1
    return None  # unbalanced (e.g. a truncated completion)


def extract_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` in ``text``, or None."""
    for m in reversed(list(_BOX_RE.finditer(text))):
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            got = _braced(text, i)
            if got is not None:
                return got[0].strip()
        elif i > m.end():  # "\boxed 5": one token
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0)
    return None


def strip_outer_braces(answer: str) -> str:
    """``{{7}}`` -> ``7``: braces around the whole answer carry no meaning (and deeply nested ones
    make LaTeX parsers slow)."""
    s = answer.strip()
    while s.startswith("{") and s.endswith("}"):
        got = _braced(s, 0)
        if got is None or got[1] != len(s):
            break
        s = got[0].strip()
    return s


def extract_answer(text: str, fallback: str = "last_number") -> str | None:
    """The model's final answer (see the module docstring for the order), or None."""
    boxed = extract_boxed(text)
    if boxed is not None or fallback == "none":
        return None if boxed is None else strip_outer_braces(boxed)
    matches = list(_ANSWER_IS_RE.finditer(text))
    if matches:
        answer = matches[-1].group(1).strip().strip("$ ").rstrip(".")
        if answer:
            return answer
    if fallback == "last_number":
        numbers = _NUMBER_RE.findall(text)
        if numbers:
            return numbers[-1].rstrip(",")
    return None


_TEXT_WRAP_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")


def normalize_answer(answer: str) -> str:
    """A canonical string for exact matching: no spaces, $, \\left/\\right, \\text{}, trailing
    period; dfrac/tfrac -> frac; ``1,000`` -> ``1000``; lower case."""
    s = answer.strip()
    inner = extract_boxed(s) if s.startswith(("\\boxed", "\\fbox")) else None
    s = strip_outer_braces(inner if inner is not None else s)
    s = _TEXT_WRAP_RE.sub(r"\1", s)
    for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\ ", ""),
                     ("dfrac", "frac"), ("tfrac", "frac"), ("^\\circ", ""), ("^{\\circ}", ""), ("\\%", ""),
                     ("$", "")):
        s = s.replace(old, new)
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)  # thousands separators
    s = re.sub(r"\s+", "", s).rstrip(".")
    return s.lower()
