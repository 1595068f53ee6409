"""One rule for "the answer must be evaluated" (string-level, linear time).

When the reference is a number, the boxed answer must be a *value*: an integer or decimal
(``15``, ``-2.50``, ``1,000``, ``0.\\overline{3}``), a fraction in lowest terms (``3/2``,
``\\frac{3}{2}``, ``-\\frac{3}{2}``), or scientific notation (``3 \\times 10^5``,
``3\\cdot 10^{5}``, ``3e5``), optionally as ``x = <value>`` and with a unit, ``\\%`` or ``^\\circ``.
Anything else that contains an operation (``+ - * / ^ !``, ``\\times``, ``\\cdot``, ``\\div``,
``\\frac`` not in lowest terms, ``\\sqrt``, ``\\binom``, any other LaTeX command) is the question's
arithmetic copied into the box, not its value, and scores 0: math-verify would evaluate it and
score it 1, and a policy finds that within a few steps on arithmetic problems. The table in
docs/rewards.md lists examples; each is a test.
"""

from __future__ import annotations

import re
from math import gcd

from retrain.rewards.extract import normalize_answer

_INT = r"\d+"
_DECIMAL = r"(?:\d+(?:\.\d*)?(?:\\overline\{\d+\})?|\.\d+)"
_SIGN = r"[-+]?"
#: Plain numbers a reference may be: 12, -3.5, .5, 3/4, \frac{3}{4}, -\frac{3}{4}, \frac{-3}{4}.
NUMBER_RE = re.compile(rf"{_SIGN}(?:{_DECIMAL}|{_INT}/{_INT}|\\frac\{{-?{_INT}\}}\{{{_INT}\}})")
_FRACTION_RE = re.compile(rf"({_SIGN})(?:(\d+)/(\d+)|\\frac\{{(-?\d+)\}}\{{(\d+)\}})")
_SCIENTIFIC_RE = re.compile(rf"{_SIGN}{_DECIMAL}(?:(?:\\times|\\cdot|\*|x)10\^(?:\{{[-+]?\d+\}}|[-+]?\d)|e[-+]?\d+)")
_LHS_RE = re.compile(r"^[a-z](?:_\{?\w+\}?)?=")  # "x=", "a_1=" (normalised: no spaces, lower case)
_OPERATION_RE = re.compile(r"[-+*/^!]|\\[a-z]+")
_UNIT_RE = re.compile(r"(?<=[\d}])(?:%|°)$")  # normalize_answer already drops \%, ^\circ
_UNIT_TEXT_RE = re.compile(r"\\(?:text|mathrm|mbox)\{[A-Za-z .]*\}\s*$")  # a unit: 15 \text{ cm}


def _strip_wrappers(answer: str) -> str:
    s = normalize_answer(_UNIT_TEXT_RE.sub("", answer.replace("\\$", "")))
    s = s.rsplit("=", 1)[-1]  # "x = 15", "75 \div 5 = 15": the value is what comes last
    if s.startswith("(") and s.endswith(")") and "(" not in s[1:-1] and ")" not in s[1:-1]:
        s = s[1:-1]
    s = s.removeprefix("\\pm").removeprefix("\\mp")  # \pm 3: notation for two values, not arithmetic
    return _UNIT_RE.sub("", s)


def is_value(answer: str) -> bool:
    """True when ``answer`` is a value form (see the module docstring), after normalisation."""
    s = _strip_wrappers(answer)
    if _SCIENTIFIC_RE.fullmatch(s):
        return True
    m = _FRACTION_RE.fullmatch(s)
    if m:
        num = int(m.group(2) or m.group(4))
        den = int(m.group(3) or m.group(5))
        return den > 1 and gcd(abs(num), den) == 1  # lowest terms: 75/5 and 6/4 still need dividing
    return re.fullmatch(rf"{_SIGN}{_DECIMAL}", s) is not None


_REPEATING_RE = re.compile(r"(-?)(\d*)\.(\d*)\\overline\{(\d+)\}")


def repeating_decimal(latex: str) -> str:
    """``0.\\overline{3}`` -> ``\\frac{1}{3}`` (math-verify does not read the overline)."""
    from fractions import Fraction

    def fraction(m: re.Match[str]) -> str:
        whole, fixed, period = m.group(2) or "0", m.group(3), m.group(4)
        value = Fraction(int(whole)) + Fraction(int(fixed or "0"), 10 ** len(fixed)) + Fraction(
            int(period), 10 ** len(fixed) * (10 ** len(period) - 1))
        return f"{m.group(1)}\\frac{{{value.numerator}}}{{{value.denominator}}}"

    return _REPEATING_RE.sub(fraction, latex) if "\\overline" in latex else latex


def is_number(reference: str) -> bool:
    """True when the reference (normalised) is a plain number, possibly ``x = <number>``."""
    s = normalize_answer(_UNIT_TEXT_RE.sub("", reference))
    return NUMBER_RE.fullmatch(_UNIT_RE.sub("", _LHS_RE.sub("", s, count=1))) is not None


def unevaluated(answer: str, reference: str) -> bool:
    """True when the reference is a number and ``answer`` is an operation on numbers rather than a
    value; for a list, set or tuple of numbers, when any element of the answer is."""
    if not is_number(reference):
        ref_items, answer_items = elements(reference), elements(answer)
        if len(ref_items) < 2 or len(answer_items) < 2 or not all(is_number(item) for item in ref_items):
            return False  # not a list of numbers, or an answer in another form (x \in [1, 3)): equivalence decides
        return any(unevaluated(item, "0") for item in answer_items)
    if is_value(answer):
        return False
    return _OPERATION_RE.search(_strip_wrappers(answer).lstrip("-+")) is not None


_OPEN, _CLOSE = "([{", ")]}"
_BRACKETS_RE = re.compile(r"^(?:\\left)?\s*(?:\\\{|[(\[])(.*?)(?:\\right)?\s*(?:\\\}|[)\]])$", re.DOTALL)


def elements(text: str) -> list[str]:
    """The top-level comma-separated items of ``3, -1``, ``\\{1, 2\\}`` or ``\\left( 1, 2 \\right)``."""
    s = text.strip().strip("$ ")
    m = _BRACKETS_RE.match(s)
    body = m.group(1) if m else s
    items, depth, start = [], 0, 0
    for i, c in enumerate(body):
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        elif c == "," and depth == 0 and not (i > 0 and body[i - 1] == "{" and body[i + 1:i + 2] == "}"):
            items.append(body[start:i])
            start = i + 1
    items.append(body[start:])
    return [item.strip() for item in items if item.strip()]
