"""Reward for the distributed tests: 1 for an odd-length completion (both outcomes occur in every group)."""

from retrain.protocols import RewardResult


class ParityReward:
    """1.0 when the completion has an odd number of characters, else 0.0."""

    def score(self, responses: list[str], references: list[str]) -> RewardResult:
        return RewardResult(rewards=[float(len(r) % 2) for r in responses])
