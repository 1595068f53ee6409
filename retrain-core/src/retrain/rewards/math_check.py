"""Checker functions that run inside reward worker processes (imported there, never in the loop)."""

from __future__ import annotations


def _latex(answer: str) -> str:
    return answer if answer.startswith("$") else f"${answer}$"


def math_equal(prediction: str, reference: str) -> float:
    """1.0 when math-verify finds ``prediction`` equivalent to ``reference``, else 0.0.

    math-verify's own signal-based timeouts are off: the worker pool enforces the timeout by
    killing the process, so a timeout is always counted. Parse failures of the prediction
    (garbage in the box) score 0; an exception inside ``verify`` is an error outcome.
    """
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" notices: the pool times out
    gold = parse(_latex(reference), parsing_timeout=None)  # type: ignore[arg-type]
    pred = parse(_latex(prediction), parsing_timeout=None)  # type: ignore[arg-type]
    if not gold or not pred:
        return 0.0
    return 1.0 if verify(gold, pred, timeout_seconds=None, raise_on_error=True) else 0.0


def warmup() -> None:
    """Run one comparison so that math-verify's lazy imports and parser set-up happen before the
    first timed call."""
    math_equal("\\frac{1}{2}", "0.5")
    math_equal("\\{1, 2\\}", "x^2")
