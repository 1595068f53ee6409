"""The RLOO advantage: rewards [B, G] -> advantages [B, G]."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class RLOO:
    """RLOO: A_i = r_i - mean of the other samples of the group (REINFORCE leave-one-out)."""

    config_section = "rloo"

    def __init__(self, std_normalize: bool = False, eps: float = 1e-4) -> None:
        self.std_normalize = std_normalize
        self.eps = eps

    def __call__(self, rewards: torch.Tensor) -> torch.Tensor:
        g = rewards.shape[1]
        if g < 2:
            return rewards.new_zeros(rewards.shape)  # no other sample to compare with
        others = (rewards.sum(dim=1, keepdim=True) - rewards) / (g - 1)  # [B, G] mean of the other samples
        adv = rewards - others  # [B, G]
        if self.std_normalize:
            adv = adv / (rewards.std(dim=1, keepdim=True) + self.eps)  # [B, G]
        equal = rewards.max(dim=1, keepdim=True).values == rewards.min(dim=1, keepdim=True).values  # [B, 1]
        return adv.masked_fill(equal, 0.0)  # a group with one reward value carries no signal: exactly 0
