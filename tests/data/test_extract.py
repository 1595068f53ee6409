"""Answer extraction and normalisation (pure functions, exact expectations)."""

from __future__ import annotations

import pytest
from retrain.rewards.extract import extract_answer, extract_boxed, normalize_answer


@pytest.mark.parametrize(("text", "expected"), [
    ("so \\boxed{5}", "5"),
    ("first \\boxed{1} then \\boxed{2}", "2"),  # the LAST box
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),  # nested braces
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces are content
    ("\\boxed{{{{7}}}}", "{{{7}}}"),
    ("\\fbox{x+1}", "x+1"),
    ("\\boxed 5 is it", "5"),
    ("\\boxed{3} and then a truncated \\boxed{4", "3"),  # last COMPLETE box
    ("no box", None),
    ("\\boxed{", None),
])
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(("text", "fallback", "expected"), [
    ("The answer is 42.", "answer_is", "42"),
    ("The answer is $\\frac{1}{2}$.\nDone", "answer_is", "\\frac{1}{2}"),
    ("Answer: 3.5", "answer_is", "3.5"),
    ("I get 3 then 7 apples", "answer_is", None),
    ("I get 3 then -7 apples", "last_number", "-7"),
    ("total 1,000 and 2.5", "last_number", "2.5"),
    ("it is 3/4", "last_number", "3/4"),
    ("the answer is 9 but \\boxed{8}", "last_number", "8"),  # a box always wins
    ("I get 3", "none", None),
    ("\\boxed{3}", "none", "3"),
    ("\\boxed{{{{7}}}}", "none", "7"),  # redundant outer braces are dropped
    ("\\boxed{{1}+{2}}", "none", "{1}+{2}"),  # not one group: kept
])
def test_extract_answer_fallbacks(text: str, fallback: str, expected: str | None) -> None:
    assert extract_answer(text, fallback) == expected


@pytest.mark.parametrize(("a", "b"), [
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("$ 5 $", "5"),
    ("\\text{Monday}", "monday"),
    ("1,000", "1000"),
    ("90^\\circ", "90"),
    ("\\left(1, 2\\right)", "(1,2)"),
    ("\\boxed{7}", "7"),
    ("12.", "12"),
])
def test_normalize_answer(a: str, b: str) -> None:
    assert normalize_answer(a) == normalize_answer(b)
