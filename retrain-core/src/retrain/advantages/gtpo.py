"""GTPO token weighting: w_t = max(0, 1 + beta*(h_t / mean_t(h) - 1)), A_t = A_i * w_t.

``h`` is the per-token uncertainty (surprisal or entropy, possibly after SEPA pooling);
``mean_t(h)`` is the mean over the row's valid (mask 1) tokens. A row whose mean uncertainty is
0 (a fully confident completion) keeps weight 1 everywhere. Weights on invalid tokens are 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def gtpo_weights(h: torch.Tensor, valid: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token GTPO weights ``[N, T]`` from uncertainty ``h [N, T]`` and a bool ``valid [N, T]``."""
    import torch

    vf = valid.to(h.dtype)  # [N, T]
    count = vf.sum(dim=1, keepdim=True).clamp(min=1.0)  # [N, 1]
    mean = (h * vf).sum(dim=1, keepdim=True) / count  # [N, 1]
    safe = torch.where(mean > 0, mean, torch.ones_like(mean))  # [N, 1]
    rel = torch.where(mean > 0, h / safe, torch.ones_like(h))  # [N, T]
    w = (1.0 + beta * (rel - 1.0)).clamp(min=0.0)  # [N, T]
    return w * vf

