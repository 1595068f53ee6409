"""The ``math`` reward's per-completion check; runs inside the reward workers, never in the loop.

``score_response(response, reference, fallback)`` does everything that may be slow or hostile
under the worker pool's timeout: answer extraction, the reference's class and parse (cached per
reference, so once per task in each worker), the evaluated-answer rule and the comparison.
It returns ``(reward, reference_unparsed)``.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from retrain.rewards.answer_forms import unevaluated
from retrain.rewards.extract import extract_answer, normalize_answer
from retrain.rewards.references import Reference, classify_reference, normalize_text

#: Extracted answers longer than this are scored 0 without calling the checker (no real answer is
#: this long, and a 100k-digit number only burns a worker's time).
MAX_ANSWER_CHARS = 1000
#: Letters that name constants, not variables (they may vanish from a parse).
_CONSTANT_LETTERS = set("eiE")
_ENVIRONMENT_RE = re.compile(r"\\(?:begin|end)\s*\{[A-Za-z*]*\}")  # \begin{pmatrix}: a name
#: Font and name commands whose argument is a name, not variables (\mathbb{R}, \mathrm{cm}).
_NAME_RE = re.compile(r"\\(?:mathbb|mathcal|mathfrak|mathrm|mathsf|operatorname)\s*\{[^{}]*\}")
_BOUND_RE = re.compile(r"(?:_\{?\s*\\?([A-Za-z])\s*(?:=|\\to|\\in)|\\,\s*d([A-Za-z])\b|\bd([A-Za-z])\s*$)")
_VARIABLE_RE = re.compile(r"(?<![\\A-Za-z])([A-Za-z]+)")
#: Sample points: integer-looking names get integers, the others get reals (and integers).
_INTEGER_NAMES = set("nmkijlpqr")
_INT_POINTS = [1, 2, 3, 4, 7, 12, 19, 30]  # irregular: a polynomial that vanishes at 1..8 is still caught
_REAL_POINTS = ["0.37", "1.21", "2.9", "-0.6", "3.7", "-1.45", "5.3", "0.05"]


_E_NOTATION_RE = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+))[eE]([-+]?\d+)\s*")


def _parse(latex: str) -> list[Any]:
    """math-verify's parse; [] when it found no maths (it returns only the input string then)."""
    from math_verify import parse

    from retrain.rewards.answer_forms import repeating_decimal

    m = _E_NOTATION_RE.fullmatch(latex)
    if m:  # 3e5: math-verify reads e as Euler's number
        latex = f"{m.group(1)} \\times 10^{{{m.group(2)}}}"
    latex = repeating_decimal(latex)
    parsed = parse(latex if latex.startswith("$") else f"${latex}$", parsing_timeout=None)  # type: ignore[arg-type]
    return [] if not parsed or all(isinstance(p, str) for p in parsed) else parsed


def _verify(gold: list[Any], pred: list[Any]) -> bool:
    from math_verify import verify

    return bool(verify(gold, pred, timeout_seconds=None, raise_on_error=True))


def variables(latex: str) -> set[str]:
    """The free variable letters a reference is written with (bound ones of sums, limits and
    integrals, command names and constants excluded)."""
    from retrain.rewards.references import MATH_WORDS, TEXT_RE

    body = _ENVIRONMENT_RE.sub(" ", _NAME_RE.sub(" ", TEXT_RE.sub(" ", latex)))
    bound = {a or b or c for a, b, c in _BOUND_RE.findall(body)}
    if "\\int" in body:
        body = re.sub(r"\bd[A-Za-z]\b", " ", body)  # the differential: d of dx is no variable
    out: set[str] = set()
    for run in _VARIABLE_RE.findall(re.sub(r"\\[A-Za-z]+", " ", body)):
        if run.lower() not in MATH_WORDS:
            out.update(run)
    return out - bound - _CONSTANT_LETTERS


def _symbol_letters(parsed: list[Any]) -> set[str]:
    """Letters in the names of the parse's free symbols and undefined functions (``f`` of ``f(x)``)."""
    from sympy.core.function import AppliedUndef

    letters: set[str] = set()
    for item in parsed[:1]:
        names = [str(s) for s in getattr(item, "free_symbols", ())]
        if hasattr(item, "atoms"):
            names += [type(f).__name__ for f in item.atoms(AppliedUndef)]
        for name in names:
            letters.update(ch for ch in name if ch.isalpha())
    return letters


@lru_cache(maxsize=4096)
def gold_for(reference: str) -> tuple[Reference, tuple[Any, ...] | None]:
    """The reference's class and its parse (None: there is a math part but it does not parse,
    or the parse lost a free variable, i.e. collapsed to something else)."""
    ref = classify_reference(reference)
    if ref.math is None:
        return ref, ()
    gold = _parse(ref.math)
    wanted = {v.lower() for v in variables(ref.math)}  # math-verify may lower-case names (AB -> a*b)
    if not gold or not wanted <= {v.lower() for v in _symbol_letters(gold)}:
        return ref, None
    return ref, tuple(gold)


def _sample_equal(gold: Any, pred: Any) -> bool:
    """Equal at every sample point of the free variables (at least 4 finite points), for
    references with free variables that math-verify's simplification cannot decide."""
    import sympy

    names = {s.name: s for s in gold.free_symbols}
    pred_names = {s.name: s for s in getattr(pred, "free_symbols", ())}
    if not names or not set(pred_names) <= set(names):
        return False
    agree = 0
    for k in range(len(_INT_POINTS)):
        point = {name: (_INT_POINTS[k] if name[0] in _INTEGER_NAMES else sympy.Rational(_REAL_POINTS[k]))
                 for name in names}
        try:  # numeric evaluation (evalf with subs): 2^{2^n} at n = 30 is a float, not a 2^30-bit integer
            a = gold.evalf(30, subs={names[n]: v for n, v in point.items()})
            b = pred.evalf(30, subs={pred_names[n]: v for n, v in point.items() if n in pred_names})
            if not (a.is_number and b.is_number) or a.has(sympy.zoo, sympy.nan) or b.has(sympy.zoo, sympy.nan):
                continue
            differ = bool(abs(a - b) > sympy.Float("1e-9") * max(1, abs(a)))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, AttributeError):
            continue
        if differ:
            return False
        agree += 1
    return agree >= 4


def _math_score(answer: str, ref: Reference, gold: tuple[Any, ...]) -> float:
    if unevaluated(answer, ref.math or ""):
        return 0.0  # the expression, not its value
    pred = _parse(answer)
    if not pred:
        return 0.0  # garbage in the box
    if _verify(list(gold), pred):
        return 1.0
    if ref.kind == "expression" and getattr(gold[0], "free_symbols", None) and _sample_equal(gold[0], pred[0]):
        return 1.0
    return 0.0


def score_response(response: str, reference: str, fallback: str = "none") -> tuple[float, bool]:
    """``(reward, reference_unparsed)`` for one completion; see the module docstring."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" notices: the pool times out
    answer = extract_answer(response, fallback)
    if answer is None:
        return 0.0, False
    if normalize_answer(answer) == normalize_answer(reference):
        return 1.0, False  # identical strings need no checker (nor a parse of the reference)
    if len(answer) > MAX_ANSWER_CHARS:
        return 0.0, False
    ref, gold = gold_for(reference)
    unparsed = gold is None
    if ref.kind == "yesno":
        first = normalize_text(answer).split()[:1]
        return float(first == [ref.word]), False
    if ref.kind == "text" and normalize_text(answer) == normalize_text(reference):
        return 1.0, unparsed
    if gold is None:  # counted: compared as text only
        return float(normalize_text(answer) == normalize_text(ref.math or reference)), True
    if not gold:
        return 0.0, False  # a text reference with no math part
    return _math_score(answer, ref, gold), False


def math_equal(prediction: str, reference: str) -> float:
    """1.0 when ``prediction`` (an answer, not a response) matches ``reference`` by the ``math`` rules."""
    return score_response(f"\\boxed{{{prediction}}}", reference)[0]


def warmup() -> None:
    """Run comparisons once so that math-verify's lazy imports and parser set-up happen before
    the first timed call (in the sandbox supervisor, before it forks workers)."""
    score_response("\\boxed{\\frac{1}{2}}", "0.5")
    score_response("\\boxed{\\{1, 2\\}}", "x^2")
    score_response("\\boxed{n}", "2^{n}")
    gold_for.cache_clear()
