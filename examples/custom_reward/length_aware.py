"""A custom reward: correct answers score 1, minus a small penalty for rambling.

Selected by dotted path in run.toml ([reward] type = "length_aware.score"); retrain imports this
file from the config's folder. It runs in the reward worker processes, one call per completion.
"""

from retrain.rewards.extract import extract_answer, normalize_answer


def score(response: str, reference: str) -> float:
    """1.0 for the right answer (0.0 otherwise), minus 0.001 per character beyond 200."""
    answer = extract_answer(response, fallback="none")
    correct = answer is not None and normalize_answer(answer) == normalize_answer(reference)
    penalty = 0.001 * max(0, len(response) - 200)
    return max(0.0, (1.0 if correct else 0.0) - penalty)
