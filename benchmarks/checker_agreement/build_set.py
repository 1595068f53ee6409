"""Build the checker-agreement set: (response, reference, label, category) rows with labels known
by construction, written to pairs.jsonl beside this file.

Two sources:

- the built-in synthetic generator (``retrain.environments.generators``, all 7 kinds, seeded):
  each reference gets known-equivalent rewritings (label 1: decimal, ``a/b``, ``\\dfrac``, ``x = v``,
  reordered roots, thousands separators, scientific notation, a unit, an unsimplified radical)
  and known-wrong ones (label 0: off by one, sign flipped, reciprocal, a missing root, and the
  question's own arithmetic copied into the box);
- hand-written competition-style references (``CURATED``, 81 pairs) in the forms real datasets use: words
  in the reference, yes/no, free variables and bounds, intervals, equations, plain-text maths.

Open data: the search index holds openai/prm800k (MATH-500 with model solutions), but its data
files are stored as Git LFS pointers, so no public set of real model answers could be used here.

    python benchmarks/checker_agreement/build_set.py      # rewrites pairs.jsonl (deterministic)
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: (answer in the box, reference, label, category)
CURATED: list[tuple[str, str, int, str]] = [
    # references with words (about a quarter of a real competition corpus)
    ("7", "7 is the only possible value", 1, "text-reference"),
    ("8", "7 is the only possible value", 0, "text-reference"),
    ("2", "The limit exists and equals 2", 1, "text-reference"),
    ("0", "The limit exists and equals 2", 0, "text-reference"),
    ("5", "There are 5 such integers", 1, "text-reference"),
    ("6", "There are 5 such integers", 0, "text-reference"),
    ("\\text{Monday}", "\\text{Monday}", 1, "text-reference"),
    ("\\text{Tuesday}", "\\text{Monday}", 0, "text-reference"),
    ("n = 1", "The only solution is $n = 1$", 1, "text-reference"),
    ("n = 2", "The only solution is $n = 1$", 0, "text-reference"),
    ("\\text{the function is constant}", "The function is constant", 1, "text-reference"),
    ("12", "12 \\text{ ways}", 1, "text-reference"),
    ("13", "12 \\text{ ways}", 0, "text-reference"),
    # yes / no
    ("\\text{Yes}", "Yes", 1, "yes-no"),
    ("yes", "Yes", 1, "yes-no"),
    ("No", "Yes", 0, "yes-no"),
    ("\\text{No}", "No", 1, "yes-no"),
    ("Yes", "No", 0, "yes-no"),
    ("no", "No, because 7 is prime", 1, "yes-no"),
    ("yes", "No, because 7 is prime", 0, "yes-no"),
    # free variables and bounds
    ("2^{\\lfloor \\frac{n}{2} \\rfloor}", "2^{\\lfloor n/2 \\rfloor}", 1, "free-variables"),
    ("2", "2^{\\lfloor n/2 \\rfloor}", 0, "free-variables"),
    ("1", "2^{\\lfloor n/2 \\rfloor}", 0, "free-variables"),
    ("\\frac{n(n+1)}{2}", "\\sum_{k=1}^{n} k", 1, "free-variables"),
    ("1", "\\sum_{k=1}^{n} k", 0, "free-variables"),
    ("\\frac{n(n+1)(2n+1)}{6}", "\\sum_{k=1}^{n} k^2", 1, "free-variables"),
    ("\\frac{n^2(n+1)}{2}", "\\sum_{k=1}^{n} k^2", 0, "free-variables"),
    ("\\binom{n+1}{2}", "\\frac{n(n+1)}{2}", 1, "free-variables"),
    ("2^{n-1}", "2^{n-1}", 1, "free-variables"),
    ("2^(n-1)", "2^{n-1}", 1, "plain-text-math"),
    ("2^n/2", "2^{n-1}", 1, "plain-text-math"),
    ("2^(n+1)", "2^{n-1}", 0, "plain-text-math"),
    ("sqrt(2)/2", "\\frac{\\sqrt{2}}{2}", 1, "plain-text-math"),
    ("n!", "n!", 1, "free-variables"),
    ("(n-1)!", "n!", 0, "free-variables"),
    # intervals, sets, tuples, equations
    ("[1, 3)", "[1, 3)", 1, "interval"),
    ("(1, 3)", "[1, 3)", 0, "interval"),
    ("(-\\infty, 2] \\cup [3, \\infty)", "(-\\infty, 2] \\cup [3, \\infty)", 1, "interval"),
    ("(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty, 2] \\cup [3, \\infty)", 0, "interval"),
    ("\\{3, 1, 2\\}", "\\{1, 2, 3\\}", 1, "set-tuple"),
    ("\\{1, 2\\}", "\\{1, 2, 3\\}", 0, "set-tuple"),
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", 1, "set-tuple"),
    ("(\\frac{\\pi}{2}, 3)", "\\left( 3, \\frac{\\pi}{2} \\right)", 0, "set-tuple"),
    ("y = 2x + 1", "y = 2x + 1", 1, "equation"),
    ("y = 1 + 2x", "y = 2x + 1", 1, "equation"),
    ("y = 2x - 1", "y = 2x + 1", 0, "equation"),
    ("5", "x = 5", 1, "equation"),
    ("6", "x = 5", 0, "equation"),
    # the evaluated-answer rule (the examples)
    ("3 \\times 10^5", "300000", 1, "scientific-notation"),
    ("3 \\cdot 10^{5}", "300000", 1, "scientific-notation"),
    ("1.2 \\times 10^{4}", "12000", 1, "scientific-notation"),
    ("3 \\times 10^4", "300000", 0, "scientific-notation"),
    ("75/5", "15", 0, "question-copy"),
    ("75 \\div 5", "15", 0, "question-copy"),
    ("2^{10}", "1024", 0, "question-copy"),
    ("10!", "3628800", 0, "question-copy"),
    ("\\sqrt{144}", "12", 0, "question-copy"),
    ("\\binom{6}{2}", "15", 0, "question-copy"),
    # symbolic constants
    ("2\\sqrt{2}", "\\sqrt{8}", 1, "radical"),
    ("\\frac{\\pi}{3}", "60^\\circ", 0, "units"),
    ("\\frac{1}{2}", "0.5", 1, "fraction-decimal"),
    ("0.\\overline{3}", "\\frac{1}{3}", 1, "fraction-decimal"),
    ("0.33", "\\frac{1}{3}", 0, "fraction-decimal"),
    # harder forms, kept whichever side they favour
    ("x \\in [1, 3)", "[1, 3)", 1, "interval"),
    ("\\text{(C)}", "\\text{(C)}", 1, "choice"),
    ("C", "\\text{(C)}", 1, "choice"),
    ("(D)", "\\text{(C)}", 0, "choice"),
    ("\\infty", "\\infty", 1, "expression"),
    ("-\\infty", "\\infty", 0, "expression"),
    ("(x+1)^2", "x^2 + 2x + 1", 1, "expression"),
    ("x^{-1}", "\\frac{1}{x}", 1, "expression"),
    ("3.14", "\\pi", 0, "expression"),
    ("2^{\\lceil n/2 \\rceil}", "2^{\\lfloor n/2 \\rfloor}", 0, "free-variables"),
    ("a = 2, b = 3", "a = 2, b = 3", 1, "equation"),
    ("\\lfloor \\frac{n+1}{2} \\rfloor", "\\lceil n/2 \\rceil", 1, "free-variables"),
    ("\\sum_{k=0}^{n} \\binom{n}{k}", "2^n", 1, "free-variables"),
    ("\\lfloor n/2 \\rfloor", "\\lceil n/2 \\rceil", 0, "free-variables"),
    ("\\text{no solution}", "No solution", 1, "text-reference"),
    ("\\emptyset", "No solution", 1, "text-reference"),
    ("2, 3", "n = 2 \\text{ or } n = 3", 1, "text-reference"),
    ("2", "n = 2 \\text{ or } n = 3", 0, "text-reference"),
]


def _value(reference: str) -> Any:
    from math_verify import parse

    parsed = parse(f"${reference}$", parsing_timeout=None)  # type: ignore[arg-type]
    return parsed[0] if parsed else None


def rewritings(problem_latex: str | None, reference: str, kind: str) -> list[tuple[str, int, str]]:
    """(answer, label, category) rows for one synthetic task."""
    import sympy

    rows: list[tuple[str, int, str]] = [(reference, 1, "identical")]
    if kind == "quadratic":
        roots = [r.strip() for r in reference.split(",")]
        if len(roots) == 2:
            rows.append((f"{roots[1]}, {roots[0]}", 1, "reordered-roots"))
            rows.append((roots[0], 0, "missing-root"))
            rows.append((f"\\{{{roots[1]}, {roots[0]}\\}}", 1, "reordered-roots"))
        if problem_latex:
            rows.append((problem_latex, 0, "question-copy"))
        return rows
    value = _value(reference)
    if value is None:
        return rows
    value = sympy.nsimplify(value) if not value.free_symbols else value
    rows.append((sympy.latex(value + 1), 0, "off-by-one"))
    if value != 0:
        rows.append((sympy.latex(-value), 0, "sign"))
    if value.is_Rational and not value.is_Integer:
        p, q = value.p, value.q
        rows.append((f"{p}/{q}", 1, "fraction-slash"))
        rows.append((reference.replace("\\frac", "\\dfrac"), 1, "dfrac"))
        rows.append((sympy.latex(1 / value), 0, "reciprocal"))
        rows.append((f"\\frac{{{2 * p}}}{{{2 * q}}}", 0, "unreduced-fraction"))
        decimal = sympy.Rational(p, q)
        if all(f in (2, 5) for f in sympy.factorint(q)):
            rows.append((str(float(decimal)), 1, "decimal"))
    if value.is_Integer:
        n = int(value)
        rows.append((f"{n}.0", 1, "decimal"))
        if abs(n) >= 1000:
            rows.append((f"{n:,}", 1, "thousands"))
        if n and n % 100 == 0:
            mantissa, exponent = n, 0
            while mantissa % 10 == 0:
                mantissa, exponent = mantissa // 10, exponent + 1
            rows.append((f"{mantissa} \\times 10^{{{exponent}}}", 1, "scientific-notation"))
        if kind in ("word",):
            rows.append((f"{n} \\text{{ units}}", 1, "unit"))
        if kind == "linear":
            rows.append((f"x = {n}", 1, "named-value"))
    if kind == "linear" and value.is_Rational and not value.is_Integer:
        rows.append((f"x = {reference}", 1, "named-value"))
    # radicals: "simplify \sqrt{72}" makes an unsimplified copy wrong by the problem's own words,
    # while maths says equal; left out as ambiguous (the curated rows hold \sqrt{8} vs 2\sqrt{2})
    if problem_latex and kind in ("arithmetic", "expression", "fraction"):
        rows.append((problem_latex, 0, "question-copy"))
    return rows


def build(n_tasks: int = 240, seed: int = 0) -> list[dict[str, Any]]:
    from retrain.environments.generators import GENERATORS

    rows: list[dict[str, Any]] = []
    rng = random.Random(seed)
    kinds = list(GENERATORS)
    for t in range(n_tasks):
        kind = kinds[t % len(kinds)]
        _, generator = GENERATORS[kind]
        problem, reference, meta = generator(random.Random(rng.random()))
        for answer, label, category in rewritings(meta.get("latex"), reference, kind):
            rows.append({"source": f"synthetic/{kind}", "reference": reference, "answer": answer, "label": label,
                         "category": category})
    for answer, reference, label, category in CURATED:
        rows.append({"source": "curated", "reference": reference, "answer": answer, "label": label,
                     "category": category})
    seen: set[tuple[str, str]] = set()
    unique = []
    for row in rows:
        key = (row["answer"], row["reference"])
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


if __name__ == "__main__":
    pairs = build()
    with open(HERE / "pairs.jsonl", "w") as f:
        for row in pairs:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(pairs)} pairs to {HERE / 'pairs.jsonl'}")
