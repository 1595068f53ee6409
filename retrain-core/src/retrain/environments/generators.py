"""Seeded generators of MATH-format problems whose answers sympy computes exactly.

Each generator takes a ``random.Random`` and returns ``(problem, answer, metadata)``: the
problem in MATH style (LaTeX between ``$``), the answer as LaTeX (what ``\\boxed{}`` should
hold), and metadata that lets a test re-derive the answer independently (``latex``: the math of
the problem, ``kind``: evaluate | solve; ``expression``: a sympy expression for word problems).

Levels: 1 arithmetic; 2 expressions (order of operations) and short word problems; 3 linear
equations with rational roots; 4 fractions and radicals; 5 quadratics (answer: the set of roots).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

Generated = tuple[str, str, dict[str, Any]]

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Emma", "Felix", "Grace", "Hugo", "Iris", "Jonah", "Kira", "Leo"]


def _latex(value: Any) -> str:
    import sympy

    return sympy.latex(value)


def arithmetic(rng: random.Random) -> Generated:
    import sympy

    op = rng.choice("+-*/")
    if op in "+-":
        a, b = rng.randint(1, 99), rng.randint(1, 99)
    elif op == "*":
        a, b = rng.randint(2, 20), rng.randint(2, 12)
    else:
        b = rng.randint(2, 12)
        a = b * rng.randint(2, 20)
    tex_op = {"+": "+", "-": "-", "*": "\\times", "/": "\\div"}[op]
    tex = f"{a} {tex_op} {b}"
    value = sympy.sympify(f"{a}{op}{b}")
    return f"Compute ${tex}$.", _latex(value), {"latex": tex, "kind": "evaluate"}


_EXPRESSIONS = [
    ("{a} + {b}*{c}", "{a} + {b} \\cdot {c}"),
    ("({a} + {b})*{c}", "({a} + {b}) \\cdot {c}"),
    ("{a}*{b} - {c}*{d}", "{a} \\cdot {b} - {c} \\cdot {d}"),
    ("{a} - ({b} - {c})", "{a} - ({b} - {c})"),
    ("{a}**2 - {b}", "{a}^2 - {b}"),
    ("({a} - {b})*({c} + {d})", "({a} - {b})({c} + {d})"),
    ("{a}*({b} + {c}) - {d}", "{a}({b} + {c}) - {d}"),
]


def expression(rng: random.Random) -> Generated:
    import sympy

    py, tex = rng.choice(_EXPRESSIONS)
    nums = {k: rng.randint(2, 12) for k in "abcd"}
    tex = tex.format(**nums)
    value = sympy.sympify(py.format(**nums))
    return f"Evaluate ${tex}$.", _latex(value), {"latex": tex, "kind": "evaluate"}


def _word_problem(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(NAMES)
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randint(2, 9), rng.randint(3, 12)
        c = rng.randint(1, a * b - 1)
        return (f"{name} has {a} boxes with {b} apples in each box and gives away {c} apples. "
                f"How many apples does {name} have left?", f"{a}*{b} - {c}")
    if kind == 1:
        v, t = rng.randint(20, 90), rng.randint(2, 6)
        return f"A train travels at {v} kilometers per hour for {t} hours. How many kilometers does it travel?", f"{v}*{t}"
    if kind == 2:
        a, p = rng.randint(2, 6), rng.randint(2, 9)
        bill = rng.choice([b for b in (20, 50, 100) if b > a * p])
        return (f"{name} buys {a} notebooks at {p} dollars each and pays with a {bill}-dollar bill. "
                f"How many dollars of change does {name} get?", f"{bill} - {a}*{p}")
    if kind == 3:
        length, width = rng.randint(3, 30), rng.randint(2, 20)
        return f"A rectangle is {length} meters long and {width} meters wide. What is its perimeter, in meters?", \
            f"2*({length} + {width})"
    pages, days = rng.randint(5, 40), rng.randint(3, 12)
    return (f"{name} reads {pages} pages a day. How many days does it take {name} to read a "
            f"{pages * days}-page book?", f"{pages * days}/{pages}")


def word(rng: random.Random) -> Generated:
    import sympy

    text, expr = _word_problem(rng)
    return text, _latex(sympy.sympify(expr)), {"expression": expr, "kind": "evaluate"}


def linear(rng: random.Random) -> Generated:
    import sympy

    x = sympy.Symbol("x")
    q = rng.choice([1, 1, 2, 3, 4, 5])
    root = sympy.Rational(rng.randint(-12, 12), q)
    a = rng.choice([k for k in range(-9, 10) if k])
    k = q * rng.choice([-3, -2, -1, 1, 2, 3])  # a - c: a multiple of q keeps d an integer
    c = a - k
    b = rng.randint(-20, 20)
    d = k * root + b
    equation = sympy.Eq(a * x + b, c * x + d, evaluate=False)
    tex = sympy.latex(equation)
    (solution,) = sympy.solve(equation, x)
    return (f"Solve for $x$: ${tex}$. Express your answer as a common fraction or an integer.",
            _latex(solution), {"latex": tex, "kind": "solve"})


def fraction(rng: random.Random) -> Generated:
    import sympy

    p, q = sympy.Rational(rng.randint(1, 9), rng.randint(2, 9)), sympy.Rational(rng.randint(1, 9), rng.randint(2, 9))
    op = rng.choice(["+", "-", "*", "/"])
    tex_op = {"+": "+", "-": "-", "*": "\\cdot", "/": "\\div"}[op]
    tex = f"{_latex(p)} {tex_op} {_latex(q)}"
    value = {"+": p + q, "-": p - q, "*": p * q, "/": p / q}[op]
    return (f"Compute ${tex}$. Express your answer as a common fraction in lowest terms.", _latex(value),
            {"latex": tex, "kind": "evaluate"})


def radical(rng: random.Random) -> Generated:
    import sympy

    m = rng.choice([2, 3, 5, 6, 7])
    if rng.random() < 0.5:
        n = rng.randint(2, 9) ** 2 * m
        tex, value = f"\\sqrt{{{n}}}", sympy.sqrt(n)
    else:
        s, t = rng.randint(1, 6), rng.randint(2, 7)
        tex, value = f"\\sqrt{{{s * s * m}}} + \\sqrt{{{t * t * m}}}", sympy.sqrt(s * s * m) + sympy.sqrt(t * t * m)
    return f"Simplify ${tex}$.", _latex(value), {"latex": tex, "kind": "evaluate"}


def quadratic(rng: random.Random) -> Generated:
    import sympy

    x = sympy.Symbol("x")
    r1, r2 = rng.randint(-9, 9), rng.randint(-9, 9)
    lead = rng.choice([1, 1, 1, 2, 3])
    poly = sympy.expand(lead * (x - r1) * (x - r2))
    tex = f"{sympy.latex(poly)} = 0"
    roots = sorted(set(sympy.solve(poly, x)))
    answer = ", ".join(_latex(r) for r in roots)
    return (f"Find all solutions to ${tex}$. Enter all the solutions, separated by commas.", answer,
            {"latex": tex, "kind": "solve"})


#: kind -> (level, generator)
GENERATORS: dict[str, tuple[int, Callable[[random.Random], Generated]]] = {
    "arithmetic": (1, arithmetic),
    "expression": (2, expression),
    "word": (2, word),
    "linear": (3, linear),
    "fraction": (4, fraction),
    "radical": (4, radical),
    "quadratic": (5, quadratic),
}
