"""The baseline: math-verify as RL libraries call it, ``verify(parse(gold), parse(response))``.

Imported in reward worker processes by run.py (so it gets the same per-call timeout as retrain).
"""

from __future__ import annotations


def score(response: str, reference: str) -> float:
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    gold = parse(reference if reference.startswith("$") else f"${reference}$", parsing_timeout=None)  # type: ignore[arg-type]
    pred = parse(response, parsing_timeout=None)  # type: ignore[arg-type]
    return 1.0 if gold and pred and verify(gold, pred, timeout_seconds=None) else 0.0


def score_raw(response: str, reference: str) -> float:
    """The other common call: the reference passed as is, without ``$...$`` (math-verify then
    extracts a number from it: ``2^{\\lfloor n/2 \\rfloor}`` becomes 2, ``\\sum_{k=1}^{n} k`` becomes 1)."""
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    gold = parse(reference, parsing_timeout=None)  # type: ignore[arg-type]
    pred = parse(response, parsing_timeout=None)  # type: ignore[arg-type]
    return 1.0 if gold and pred and verify(gold, pred, timeout_seconds=None) else 0.0
