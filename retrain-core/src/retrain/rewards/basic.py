"""The ``match`` and ``math`` rewards: extract the final answer, compare with the reference."""

from __future__ import annotations

import logging

from retrain.errors import ConfigError
from retrain.protocols import RewardResult
from retrain.rewards.answer_forms import unevaluated  # noqa: F401 - re-exported: the evaluated-answer rule
from retrain.rewards.extract import FALLBACKS, extract_answer, normalize_answer
from retrain.rewards.pool import WorkerPool

log = logging.getLogger("retrain.rewards")
#: Distinct unparsed references named in warnings; later ones are only counted.
MAX_WARNED_REFERENCES = 10


def _check_fallback(fallback: str) -> None:
    if fallback not in FALLBACKS:
        raise ConfigError(f'[reward] fallback = "{fallback}": must be one of {", ".join(FALLBACKS)}.')


class MatchReward:
    """1 if the extracted answer equals the reference after normalisation, else 0."""

    config_section = "reward"

    def __init__(self, fallback: str = "none") -> None:
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

    def __init__(self, timeout: float = 5.0, workers: int = 2, fallback: str = "none") -> None:
        _check_fallback(fallback)
        if timeout <= 0:
            raise ConfigError(f"[reward] timeout = {timeout}: must be > 0 seconds.")
        self.fallback = fallback
        self.pool = WorkerPool(workers, timeout, preload=("math_verify", "retrain.rewards.math_check"),
                                warmup="retrain.rewards.math_check:warmup")
        self.unparsed: set[str] = set()  # distinct references that did not parse (warned about once each)

    def score(self, responses: list[str], references: list[str]) -> RewardResult:
        """Extraction, classification and comparison all run in the workers, under the timeout."""
        jobs = [(response, reference, self.fallback) for response, reference in zip(responses, references, strict=True)]
        result = RewardResult([0.0] * len(responses))
        for i, outcome in enumerate(self.pool.run("retrain.rewards.math_check:score_response", jobs)):
            if outcome.status == "ok":
                result.rewards[i], unparsed = outcome.value
                if unparsed:
                    result.unparsed_refs += 1
                    self._warn_unparsed(references[i])
            elif outcome.status == "timeout":
                result.timeouts += 1
            else:
                result.errors += 1
        return result

    def _warn_unparsed(self, reference: str) -> None:
        if reference in self.unparsed:
            return
        self.unparsed.add(reference)
        if len(self.unparsed) <= MAX_WARNED_REFERENCES:
            more = " (further ones are only counted)" if len(self.unparsed) == MAX_WARNED_REFERENCES else ""
            log.warning("reward: reference %r does not parse as math; answers to it are compared as text only and "
                        "counted in reward/unparsed_refs%s. Fix the dataset's answer or use [reward] type = \"match\".",
                        reference[:200], more)

    def close(self) -> None:
        self.pool.close()
