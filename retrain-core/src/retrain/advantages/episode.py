"""Episode-level advantages: rewards ``[B, G]`` -> advantages ``[B, G]`` (docs/advantages.md).

Each component is a class whose keyword arguments are its options (section ``[grpo]``,
``[dr_grpo]``, ``[maxrl]``) and whose instances are called on a ``[B, G]`` float tensor.
A group whose rewards are all equal carries no signal: its advantages are exactly 0 (the
credit assigner counts such groups as ``adv/zero_frac``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def equal_groups(rewards: torch.Tensor) -> torch.Tensor:
    """Groups whose rewards are all equal: ``[B, G]`` -> ``[B]`` bool."""
    return rewards.max(dim=1).values == rewards.min(dim=1).values  # [B]


def _zero_equal_groups(adv: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    # exactly 0, not a rounding residue of (r - mean)
    return adv.masked_fill(equal_groups(rewards).unsqueeze(1), 0.0)  # [B, G]


class GRPO:
    """GRPO: A_i = (r_i - mean_g) / (std_g + eps), std the sample std (G - 1) (DeepSeekMath, TRL)."""

    def __init__(self, eps: float = 1e-4) -> None:
        self.eps = eps

    def __call__(self, rewards: torch.Tensor) -> torch.Tensor:
        mean = rewards.mean(dim=1, keepdim=True)  # [B, 1]
        # sample std (G - 1); a group of one sample has no spread
        std = rewards.std(dim=1, keepdim=True) if rewards.shape[1] > 1 else rewards.new_zeros(rewards.shape[0], 1)
        adv = (rewards - mean) / (std + self.eps)  # [B, G]
        return _zero_equal_groups(adv, rewards)


class DrGRPO:
    """Dr. GRPO: A_i = r_i - mean_g (no std normalisation; arXiv 2503.20783)."""

    def __call__(self, rewards: torch.Tensor) -> torch.Tensor:
        adv = rewards - rewards.mean(dim=1, keepdim=True)  # [B, G]
        return _zero_equal_groups(adv, rewards)


class MaxRL:
    """Maximum-likelihood RL: A_i = (r_i - mean_g) / (mean_g + eps); all-zero group -> 0 (arXiv 2602.02710).

    The formula reads rewards as pass rates (>= 0). A group with a negative reward is first shifted
    so that its minimum is 0 (s_i = r_i - min_g), which keeps every sign and order right: the best
    sample gets the largest advantage, and -1 <= A_i <= G - 1
    (docs/advantages.md).
    """

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = eps

    def __call__(self, rewards: torch.Tensor) -> torch.Tensor:
        floor = rewards.min(dim=1, keepdim=True).values.clamp(max=0.0)  # [B, 1]: 0 unless a reward is negative
        shifted = rewards - floor  # [B, G], >= 0
        mean = shifted.mean(dim=1, keepdim=True)  # [B, 1]
        adv = (shifted - mean) / (mean + self.eps)  # [B, G]
        return _zero_equal_groups(adv, rewards)
