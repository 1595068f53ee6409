"""The ``match`` and ``math`` rewards: extract the final answer, compare with the reference."""

from __future__ import annotations

import re

from retrain.errors import ConfigError
from retrain.protocols import RewardResult
from retrain.rewards.extract import FALLBACKS, extract_answer, normalize_answer
from retrain.rewards.pool import WorkerPool

#: Extracted answers longer than this are scored 0 without calling the checker (no real answer is
#: this long, and a 100k-digit number only burns a worker's time).
MAX_ANSWER_CHARS = 1000

#: A plain number (after ``normalize_answer``): 12, -3.5, .5, 3/4, \frac{3}{4}, -\frac{3}{4}.
_NUMBER_RE = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+|\d+/\d+|\\frac\{\d+\}\{\d+\})")
_OPERATORS = ("+", "-", "*", "\\times", "\\cdot", "\\div")


def unevaluated(answer: str, reference: str) -> bool:
    """True when the reference is a plain number and the answer is arithmetic on numbers (``75 \\div 5``).

    math-verify evaluates expressions, so it scores the question's own expression copied into the
    box as correct; a policy finds that within a few steps on arithmetic problems. Such an answer
    scores 0 (``x = 15``, ``15.0``, ``\\frac{30}{2}`` still go to the checker).
    """
    if not _NUMBER_RE.fullmatch(normalize_answer(reference)):
        return False
    body = normalize_answer(answer).split("=")[-1].lstrip("-")
    return any(op in body for op in _OPERATORS)


def _check_fallback(fallback: str) -> None:
    if fallback not in FALLBACKS:
        raise ConfigError(f'[reward] fallback = "{fallback}": must be one of {", ".join(FALLBACKS)}.')


class MatchReward:
    """1 if the extracted answer equals the reference after normalisation, else 0."""

    config_section = "reward"

    def __init__(self, fallback: str = "last_number") -> None:
        _check_fallback(fallback)
        self.fallback = fallback

    def score(self, responses: list[str], references: list[str]) -> RewardResult:
        rewards = []
        for response, reference in zip(responses, references, strict=True):
            answer = extract_answer(response, self.fallback)
            ok = answer is not None and normalize_answer(answer) == normalize_answer(reference)
            rewards.append(1.0 if ok else 0.0)
        return RewardResult(rewards)

    def close(self) -> None:
        pass


class MathReward:
    """1 if the final answer (last \\boxed{}) is mathematically equivalent to the reference (math-verify), else 0."""

    config_section = "reward"

    def __init__(self, timeout: float = 5.0, workers: int = 2, fallback: str = "last_number") -> None:
        _check_fallback(fallback)
        if timeout <= 0:
            raise ConfigError(f"[reward] timeout = {timeout}: must be > 0 seconds.")
        self.fallback = fallback
        self.pool = WorkerPool(workers, timeout, preload=("math_verify", "retrain.rewards.math_check"),
                                warmup="retrain.rewards.math_check:warmup")

    def score(self, responses: list[str], references: list[str]) -> RewardResult:
        rewards = [0.0] * len(responses)
        jobs: list[tuple[str, str]] = []
        rows: list[int] = []
        for i, (response, reference) in enumerate(zip(responses, references, strict=True)):
            answer = extract_answer(response, self.fallback)
            if answer is None:
                continue  # no answer: 0, not an error
            if normalize_answer(answer) == normalize_answer(reference):
                rewards[i] = 1.0  # identical strings need no checker
            elif unevaluated(answer, reference):
                continue  # the expression, not its value: 0
            elif len(answer) <= MAX_ANSWER_CHARS:
                jobs.append((answer, reference))
                rows.append(i)
        result = RewardResult(rewards)
        for i, outcome in zip(rows, self.pool.run("retrain.rewards.math_check:math_equal", jobs), strict=True):
            if outcome.status == "ok":
                rewards[i] = float(outcome.value)
            elif outcome.status == "timeout":
                result.timeouts += 1
            else:
                result.errors += 1
        return result

    def close(self) -> None:
        self.pool.close()
