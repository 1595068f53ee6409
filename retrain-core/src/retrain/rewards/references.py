"""Reference answers, classified once per task so that each is compared the way that suits it.

Classes (``classify_reference``), tried in this order:

| class | examples | compared by |
|---|---|---|
| ``yesno`` | ``Yes``, ``\\text{No}``, ``No, since 7 is prime`` | the answer's first word (yes/no/true/false) |
| ``text`` | ``7 is the only possible value``, ``\\text{Monday}`` | normalised text; and by math against the math part (``7``) when one can be isolated |
| ``interval`` | ``[1, 3)``, ``(-\\infty, 2] \\cup [3, \\infty)`` | math-verify (endpoints and openness) |
| ``equation`` | ``x = 5``, ``y = 2x + 1``, ``a_n = 2^{n-1}`` | math-verify (a bare value matches ``x = 5``) |
| ``set`` | ``\\{1, 2\\}``, ``(1, 2)``, ``3, -1`` | math-verify (sets unordered, tuples ordered) |
| ``number`` | ``15``, ``-\\frac{3}{2}``, ``0.25`` | the evaluated-answer rule, then math-verify |
| ``expression`` | ``2^{\\lfloor n/2 \\rfloor}``, ``\\sum_{k=1}^{n} k``, ``\\sqrt{2}`` | math-verify, then evaluation at sample points of the free variables |

Everything here is string work, linear in the reference's length; parsing happens in the workers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from retrain.rewards.answer_forms import is_number
from retrain.rewards.extract import brace_pairs

KINDS = ("number", "expression", "set", "interval", "equation", "yesno", "text")

#: Letter runs that are maths, not words (function names, constants).
MATH_WORDS = frozenset("""sin cos tan sec csc cot sinh cosh tanh arcsin arccos arctan log ln lg exp lim max min
    gcd lcm mod det deg dim ker sup inf arg sgn sign floor ceil pi infty infinity cis""".split())
#: Short words that are English even though they are short.
SHORT_WORDS = frozenset("""is of in an or to no it be at by if on as so we and the are not for all any has yes can
    odd one two six ten way red""".split())
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_ENVIRONMENT_RE = re.compile(r"\\(?:begin|end)\s*\{[A-Za-z*]*\}")  # \begin{pmatrix}: not a word
_RELATION_RE = re.compile(r"\\(?:le|ge|leq|geq|lt|gt|neq|ne|approx)(?![A-Za-z])")
#: LaTeX wrappers whose argument is text (\text{...}, \mathrm{...}).
TEXT_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")
_LETTERS_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]+")
_DOLLAR_RE = re.compile(r"\$+([^$]+)\$+")
_YESNO_RE = re.compile(r"^\W*(yes|no|true|false)\b", re.IGNORECASE)
_INTERVAL_RE = re.compile(r"^\s*[\[(].*,.*[\])]\s*$")


@dataclass(frozen=True)
class Reference:
    kind: str  # one of KINDS
    text: str  # the reference as given
    math: str | None  # the part to compare by math (None: compare as text only)
    word: str | None = None  # for yesno: "yes" | "no" | "true" | "false"


def words(reference: str) -> list[str]:
    """English-looking words outside LaTeX command names (``is``, ``only``; not ``sin``, ``xy``)."""
    body = _COMMAND_RE.sub(" ", TEXT_RE.sub(r" \1 ", _ENVIRONMENT_RE.sub(" ", reference)))
    out = []
    for run in _LETTERS_RE.findall(body):
        low = run.lower()
        if low in MATH_WORDS:
            continue
        if low in SHORT_WORDS or (len(low) >= 4 and re.search(r"[aeiouy]", low)):
            out.append(low)
    return out


def normalize_text(text: str) -> str:
    """Lower case, no LaTeX text wrappers, ``$``, punctuation or extra spaces: for comparing words."""
    s = TEXT_RE.sub(r" \1 ", text.replace("$", " "))
    s = re.sub(r"\\[,;:! ]", " ", s)
    s = re.sub(r"[^\w\s]", " ", s.lower())
    return " ".join(s.split())


def math_part(reference: str) -> str | None:
    """The mathematical part of a text reference: its ``$...$`` segments, else the runs between
    words that hold a digit or a LaTeX command (``7`` in ``7 is the only possible value``); several
    parts are joined as a list; None when there is none."""
    dollars = [m.strip() for m in _DOLLAR_RE.findall(reference) if m.strip()]
    if dollars:
        return ", ".join(dollars)
    body = TEXT_RE.sub(lambda m: " " + " ".join("\0" for _ in m.group(1).split()) + " ", reference)
    word_set = set(words(reference))
    pieces: list[str] = []
    current: list[str] = []
    for token in body.split():
        bare = token.strip(".,;:!?").lower()
        if token == "\0" or bare in word_set or bare in SHORT_WORDS:
            if current:
                pieces.append(" ".join(current))
            current = []
        else:
            current.append(token)
    if current:
        pieces.append(" ".join(current))
    parts = [p.strip(" .,;:!?") for p in pieces]
    parts = [p for p in parts if re.search(r"\d|\\[A-Za-z]", p)]
    return ", ".join(parts) if parts else None


def _top_level(reference: str, chars: str) -> bool:
    """True when one of ``chars`` occurs outside every brace group (``{1, 2}`` in ``\\frac`` does not count)."""
    pairs = brace_pairs(reference)
    skip_until = -1
    for i, c in enumerate(reference):
        if i <= skip_until:
            continue
        if c == "{" and i in pairs and not reference[:i].endswith("\\"):
            skip_until = pairs[i]
        elif c in chars:
            return True
    return False


def classify_reference(reference: str) -> Reference:
    """The class of ``reference`` and the part of it to compare by math (see the module table)."""
    ref = reference.strip()
    m = _YESNO_RE.match(normalize_text(ref))
    if m and (len(normalize_text(ref).split()) == 1 or re.match(r"^\W*\w+\s*[,.;:!]", TEXT_RE.sub(r"\1", ref))):
        return Reference("yesno", ref, None, m.group(1).lower())
    bare = TEXT_RE.sub(r"\1", ref)
    if words(ref) or (bare != ref and not re.search(r"\d", bare) and TEXT_RE.fullmatch(ref.strip("$ "))):
        return Reference("text", ref, math_part(ref))
    core = ref.strip("$ ").rstrip(".")
    if "\\cup" in core or "\\infty" in core and _INTERVAL_RE.match(core) or (
            _INTERVAL_RE.match(core) and core.lstrip()[0] + core.rstrip()[-1] in ("[)", "(]", "[]")):
        return Reference("interval", ref, core)
    if _top_level(core, "=<>") or _RELATION_RE.search(core):
        return Reference("equation", ref, core)
    if is_number(core):
        return Reference("number", ref, core)
    if _top_level(core, ",") or core.startswith("\\{"):
        return Reference("set", ref, core)
    return Reference("expression", ref, core)
