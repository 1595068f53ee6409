"""Policy-gradient losses on per-token logprobs (DESIGN section 4), as pure tensor functions.

Shapes: N rows, T completion tokens. All variants aggregate by **token mean over every
completion token of the batch** (``denom`` = mask.sum() of the whole batch, so micro-batches
add up to the same loss as one big batch).

Behaviour policy and importance weights:

* ``old_logprobs`` is the behaviour policy the ratio is clipped against. When the engine shares
  the trainer's weights (the ``pytorch`` engine) it is the engine's sampling logprobs, computed at
  the same temperature from the same weights, so the ratio is 1 on-policy (up to float rounding,
  < 1e-5 in fp32).
* When the engine is separate (vLLM, a server), its numerics differ from the trainer's. Then the
  ratio is taken against the trainer's own logprobs before the update (``old = lp.detach()``,
  the "proximal" policy) and the engine/trainer gap is corrected by a truncated importance weight
  ``w = min(exp(old - engine_lp), tis_cap)`` (stop-gradient), as in Yao et al. 2025 ("truncated
  importance sampling"). The caller decides; this module only takes ``is_weight``.

Variants (``[algorithm] loss``):

* ``ppo``:   -min(r A, clip(r, 1-eps_low, 1+eps_high) A),   r = exp(lp - old)
* ``is``:    -r A  (plain importance sampling, no clip; on-policy this is REINFORCE)
* ``gspo``:  sequence ratio s_i = exp(mean_t(lp - old)) (length-normalised), applied per token as
             sg(s_i) * exp(lp_t - sg(lp_t)) (GSPO-token), clipped like ppo with the same eps.
* ``cispo``: -sg(clip(r, 1-eps_low, 1+eps_high)) * A * lp  (clipped IS weight, gradient through lp only)

KL: ``kl_coef * k3`` with k3 = exp(ref - lp) - (ref - lp) - 1 (unbiased, always >= 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

LOSSES = ("ppo", "is", "gspo", "cispo")


@dataclass
class LossSums:
    """Sums over masked tokens of one micro-batch, to be divided by the batch token count."""

    policy: float = 0.0
    kl_ref: float = 0.0
    clipped: float = 0.0
    ratio: float = 0.0


def policy_loss(
    logprobs: torch.Tensor,  # [N, T] trainer logprobs (with grad)
    old_logprobs: torch.Tensor,  # [N, T] behaviour policy logprobs
    advantages: torch.Tensor,  # [N, T]
    mask: torch.Tensor,  # [N, T] 1 on trained tokens
    *,
    kind: str = "ppo",
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    denom: float | torch.Tensor | None = None,
    is_weight: torch.Tensor | None = None,  # [N, T] stop-gradient weight (truncated IS)
    ref_logprobs: torch.Tensor | None = None,  # [N, T] reference model logprobs
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, LossSums]:
    """Token-mean policy loss (+ optional k3 KL to a reference); returns (loss, sums for metrics)."""
    import torch

    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; expected one of {', '.join(LOSSES)}")
    mask = mask.to(logprobs.dtype)
    old = old_logprobs.detach().to(logprobs.dtype)
    adv = advantages.detach().to(logprobs.dtype)
    if denom is None:
        denom = mask.sum()
    denom = torch.as_tensor(denom, dtype=logprobs.dtype).clamp(min=1.0)
    log_ratio = (logprobs - old) * mask  # [N, T]
    low, high = 1.0 - eps_low, 1.0 + eps_high

    if kind == "gspo":
        lengths = mask.sum(1).clamp(min=1.0)  # [N]
        seq_ratio = torch.exp(log_ratio.sum(1) / lengths)  # [N]
        ratio = seq_ratio.detach().unsqueeze(1) * torch.exp(logprobs - logprobs.detach())  # [N, T]
    else:
        ratio = torch.exp(log_ratio)  # [N, T]

    if kind in ("ppo", "gspo"):
        unclipped = ratio * adv
        clipped = ratio.clamp(low, high) * adv
        per_token = -torch.minimum(unclipped, clipped)  # [N, T]
        r = ratio.detach()
        clip_hits = ((r < low) & (adv < 0)) | ((r > high) & (adv > 0))
    elif kind == "is":
        per_token = -ratio * adv
        clip_hits = torch.zeros_like(mask, dtype=torch.bool)
    else:  # cispo
        r = ratio.detach()
        per_token = -r.clamp(low, high) * adv * logprobs
        clip_hits = (r < low) | (r > high)

    if is_weight is not None:
        per_token = per_token * is_weight.detach().to(per_token.dtype)
    policy = (per_token * mask).sum() / denom
    loss = policy
    kl_sum = 0.0
    if ref_logprobs is not None:
        delta = (ref_logprobs.detach().to(logprobs.dtype) - logprobs) * mask  # [N, T]
        k3 = (torch.exp(delta) - delta - 1.0) * mask  # [N, T]
        kl_sum = float(k3.detach().sum())
        if kl_coef:
            loss = loss + kl_coef * k3.sum() / denom
    sums = LossSums(
        policy=float(policy.detach()) * float(denom),
        kl_ref=kl_sum,
        clipped=float((clip_hits.to(mask.dtype) * mask).sum()),
        ratio=float((ratio.detach() * mask).sum()),
    )
    return loss, sums


def truncated_is_weight(trainer_logprobs: torch.Tensor, engine_logprobs: torch.Tensor, cap: float) -> torch.Tensor:
    """min(exp(trainer - engine), cap), stop-gradient: [N, T]."""
    import torch

    return torch.exp(trainer_logprobs.detach() - engine_logprobs.detach()).clamp(max=cap)


def mismatch_metrics(trainer_logprobs: torch.Tensor, engine_logprobs: torch.Tensor,
                     mask: torch.Tensor) -> dict[str, float]:
    """Engine-vs-trainer gap on the sampled tokens: k3 KL(engine || trainer) and mean |delta|."""
    import torch

    mask = mask.to(trainer_logprobs.dtype)
    n = mask.sum().clamp(min=1.0)
    d = (trainer_logprobs.detach() - engine_logprobs.detach().to(trainer_logprobs.dtype)) * mask  # [N, T]
    k3 = (torch.exp(d) - d - 1.0) * mask  # [N, T]
    return {"mismatch/kl": float(k3.sum() / n), "mismatch/abs_logprob_delta": float(d.abs().sum() / n)}
