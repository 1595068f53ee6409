"""The gtpo_hicra transform: GTPO weighting, then A_t + alpha*|A_t| on planning tokens (arXiv 2509.03646).

Adding ``alpha*|A_t|`` raises a planning token's advantage whatever its sign: in a correct
completion the strategic move is reinforced more (A(1 + alpha)), in an incorrect one it is
penalised less (A(1 - alpha)), which keeps the policy exploring at the planning level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.advantages import TransformSpec
from retrain.errors import ConfigError

if TYPE_CHECKING:
    import torch


class HICRAAmplifier:
    """Token-advantage hook: ``A [N, T]`` -> ``A + alpha*|A|`` where ``planning [N, T]`` (and valid)."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def __call__(self, token_adv: torch.Tensor, planning: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        boost = self.alpha * token_adv.abs() * (planning & valid).to(token_adv.dtype)  # [N, T]
        return token_adv + boost  # [N, T]


def make_gtpo_hicra(alpha: float = 0.2) -> TransformSpec:
    """HICRA: GTPO, then A_t + alpha*|A_t| on planning tokens (arXiv 2509.03646)."""
    if alpha < 0:
        raise ConfigError(f"[hicra] alpha = {alpha}: must be >= 0 (0 = plain GTPO).")
    return TransformSpec(name="gtpo_hicra", use_gtpo=True, needs_planning=True, uses_sepa_controller=False,
                         token_advantage_transform=HICRAAmplifier(alpha))


make_gtpo_hicra.config_section = "hicra"  # type: ignore[attr-defined]
