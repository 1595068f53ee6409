"""Answer extraction and normalisation for verifiable rewards, in linear time.

Extraction order (``extract_answer``):

1. the content of the LAST complete ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces and
   escaped braces (``\\{``) handled; ``\\boxed 5`` (no braces) works too;
2. fallback ``"answer_is"``: the text after the last "answer is" / "answer:" (up to the end of
   the line or sentence);
3. fallback ``"last_number"``: (2), then the last number in the response (``-3``, ``2.5``, ``3/4``,
   ``\\frac{3}{4}``, ``1,000``) if it stands alone: a number inside a fraction, a power, a root, a
   factorial or next to a letter (``1/n``, ``\\frac{1}{n}``, ``x^7``, ``10!``, ``2n``) is no answer.

``fallback = "none"`` (the default) accepts boxed answers only (the strict MATH convention).

Every function here is linear in the length of its input (one pass over the braces, regexes
without nested quantifiers), so a hostile completion (``"\\boxed{" * 9000``, 16,000 nested braces)
costs milliseconds; the ``math`` reward still runs them inside its worker processes, under the
same timeout as the checker.
"""

from __future__ import annotations

import re

FALLBACKS = ("none", "answer_is", "last_number")

_BRACE_RE = re.compile(r"\\[{}]|[{}]")  # an escaped brace is one token, skipped
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])( *)")
_ANSWER_IS_RE = re.compile(r"answer[ \t]*(?:is|:)", re.IGNORECASE)
_ANSWER_END_RE = re.compile(r"\n|(?<!\d)\.(?!\d)")
#: A number token: \frac{a}{b} with integer parts, a/b, a decimal, an integer with thousands separators.
_NUMBER_RE = re.compile(r"-?\\[dt]?frac\{\d+\}\{\d+\}|-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
#: Characters that glue a number to an expression: it is then a part, not the answer.
_GLUE_BEFORE = set("^_/{\\!") | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_GLUE_AFTER = set("^_/{}!") | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def brace_pairs(text: str) -> dict[int, int]:
    """Index of each ``{`` -> index of its matching ``}``, for the groups that close (one pass;
    ``\\{`` and ``\\}`` are content, not structure)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_RE.finditer(text):  # only the braces, not every character (C speed)
        token = m.group(0)
        if token == "{":
            stack.append(m.start())
        elif token == "}" and stack:
            pairs[stack.pop()] = m.start()
    return pairs


def extract_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` in ``text`` (the one that opens last), or None."""
    marks = list(_BOX_RE.finditer(text))
    if not marks:
        return None
    pairs = brace_pairs(text) if "{" in text else {}
    for m in reversed(marks):
        i = m.end()
        if i < len(text) and text[i] == "{":
            end = pairs.get(i)
            if end is not None:
                return text[i + 1:end].strip()
        elif m.group(1):  # "\boxed 5": one token
            token = re.match(r"[^\s$]+", text[i:i + 200])
            if token:
                return token.group(0)
    return None


def strip_outer_braces(answer: str) -> str:
    """``{{7}}`` -> ``7``: braces around the whole answer carry no meaning (and deeply nested ones
    make LaTeX parsers slow)."""
    s = answer.strip()
    if not s.startswith("{"):
        return s
    pairs = brace_pairs(s)
    lo, hi = 0, len(s)  # s[lo:hi] is the current answer
    while lo < hi and s[lo] == "{" and pairs.get(lo) == hi - 1:
        lo, hi = lo + 1, hi - 1
        while lo < hi and s[lo].isspace():
            lo += 1
        while hi > lo and s[hi - 1].isspace():
            hi -= 1
    return s[lo:hi]


def _answer_is(text: str) -> str | None:
    last = None
    for last in _ANSWER_IS_RE.finditer(text):
        pass
    if last is None:
        return None
    rest = text[last.end():last.end() + 2000].lstrip(" \t:")
    end = _ANSWER_END_RE.search(rest)
    answer = (rest[:end.start()] if end else rest).strip().strip("$ ").rstrip(".")
    return answer or None


def last_number(text: str) -> str | None:
    """The last number in ``text`` if it stands alone (see the module docstring), else None."""
    last = None
    for last in _NUMBER_RE.finditer(text):
        pass
    if last is None:
        return None
    token = last.group(0).rstrip(",")
    before = text[last.start() - 1] if last.start() > 0 else " "
    after = text[last.start() + len(token)] if last.start() + len(token) < len(text) else " "
    if before in _GLUE_BEFORE or after in _GLUE_AFTER:
        return None  # 1/n, \frac{1}{n}, x^7, 2^{10}, 10!, \sqrt{2}, 2n, a_3
    if before == "(" and last.start() > 1 and text[last.start() - 2].isalpha():
        return None  # f(7): an argument, not a value
    return token


def extract_answer(text: str, fallback: str = "none") -> str | None:
    """The model's final answer (see the module docstring for the order), or None."""
    boxed = extract_boxed(text)
    if boxed is not None or fallback == "none":
        return None if boxed is None else strip_outer_braces(boxed)
    answer = _answer_is(text)
    if answer is not None:
        return answer
    return last_number(text) if fallback == "last_number" else None


_TEXT_WRAP_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mbox)\{([^{}]*)\}")


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
