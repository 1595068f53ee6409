"""Policy-gradient losses on per-token logprobs (docs/training.md, "The loss"), as pure tensor functions.

Shapes: N rows, T completion tokens. The per-token terms are summed, each row scaled by
``row_scale`` (when given), and divided by ``denom``; :func:`aggregation` picks both for
``[algorithm] loss_agg`` (default ``token_mean``: ``denom`` = the token count of the whole step,
so micro-batches add up to the same loss as one big batch).

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

KL (``[algorithm] kl_estimator``), with d = lp - ref per token, aggregated like the policy term:

* ``k1``: d (the log ratio; unbiased, can be negative)
* ``k2``: d**2 / 2 (biased, always >= 0)
* ``k3``: exp(-d) + d - 1 (unbiased, always >= 0, low variance; Schulman 2020)
* ``low_var_kl``: k3 clamped to [-10, 10] (verl's name and clamp)

Aggregation (``[algorithm] loss_agg``; TRL's ``loss_type`` in brackets), with N rows in the step,
L_i the trained tokens of row i, M micro-batches in the step:

* ``token_mean`` [dapo]: sum_i sum_t l_it / sum_i L_i
* ``seq_mean_token_mean`` [grpo]: (1/N) sum_i (1/L_i) sum_t l_it
* ``seq_mean_token_sum_norm`` [dr_grpo]: sum_i sum_t l_it / (N * max_tokens)
* ``micro_token_mean`` [bnpo]: (1/M) sum_m (sum_{i in m} sum_t l_it / sum_{i in m} L_i)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

LOSSES = ("ppo", "is", "gspo", "cispo")
LOSS_AGGS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm", "micro_token_mean")
KL_ESTIMATORS = ("k1", "k2", "k3", "low_var_kl")


@dataclass
class LossSums:
    """Sums over masked tokens of one micro-batch, to be divided by the batch token count."""

    policy: float = 0.0  # sum of the per-token policy terms (unscaled)
    kl_ref: float = 0.0  # sum of the per-token KL estimates (unscaled)
    objective: float = 0.0  # this micro-batch's share of the step loss (what backward() sees)
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
    kl_estimator: str = "k3",
    row_scale: torch.Tensor | None = None,  # [N] per-row weight before / denom (seq_mean_token_mean)
    on_device: bool = False,
) -> tuple[torch.Tensor, LossSums]:
    """Policy loss sum_it(l_it * row_scale_i) / denom (+ optional KL to a reference, aggregated the
    same way); returns (loss, sums for metrics). Defaults: token mean over ``mask``, k3.
    ``on_device``: the sums stay 0-dim tensors (no host synchronisation per micro-batch)."""
    import torch

    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; expected one of {', '.join(LOSSES)}")
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown kl_estimator {kl_estimator!r}; expected one of {', '.join(KL_ESTIMATORS)}")
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
    scale = 1.0 if row_scale is None else row_scale.detach().to(logprobs.dtype).unsqueeze(1)  # [N, 1]
    policy_tokens = per_token * mask  # [N, T]
    policy = (policy_tokens * scale).sum() / denom if row_scale is not None else policy_tokens.sum() / denom
    loss = policy
    kl_sum = mask.new_zeros(())
    if ref_logprobs is not None:
        kl = kl_penalty(logprobs, ref_logprobs.detach().to(logprobs.dtype), mask, kl_estimator)  # [N, T]
        kl_sum = kl.detach().sum()
        if kl_coef:
            loss = loss + kl_coef * ((kl * scale).sum() if row_scale is not None else kl.sum()) / denom
    values = (policy_tokens.detach().sum(), kl_sum, loss.detach(), (clip_hits.to(mask.dtype) * mask).sum(),
              (ratio.detach() * mask).sum())
    if not on_device:
        values = tuple(torch.stack(values).tolist())  # one synchronisation
    return loss, LossSums(*values)


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
               estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) on the sampled tokens, 0 off ``mask``: [N, T]."""
    import torch

    delta = (ref_logprobs - logprobs) * mask  # [N, T] log(pi_ref / pi); masked first (exp of padding may overflow)
    if estimator == "k1":
        return -delta
    if estimator == "k2":
        return 0.5 * delta * delta
    k3 = (torch.exp(delta) - delta - 1.0) * mask  # [N, T]
    return k3.clamp(-10.0, 10.0) if estimator == "low_var_kl" else k3


def aggregation(loss_agg: str, mask: torch.Tensor, *, step_tokens: float, step_rows: float,
                max_tokens: int, step_micro_batches: float) -> tuple[float, torch.Tensor | None]:
    """(denom, row_scale [n] or None) of one micro-batch for ``[algorithm] loss_agg``.

    ``mask [n, T]`` is this micro-batch's; ``step_*`` count the whole optimizer step (all
    micro-batches, all ranks), so the micro-batch losses add up to the step loss.
    """
    if loss_agg == "token_mean":
        return max(1.0, step_tokens), None
    if loss_agg == "seq_mean_token_mean":
        return max(1.0, step_rows), 1.0 / mask.sum(1).clamp(min=1.0)  # [n]
    if loss_agg == "seq_mean_token_sum_norm":
        return max(1.0, step_rows * max_tokens), None
    if loss_agg == "micro_token_mean":
        return max(1.0, float(mask.sum())) * max(1.0, step_micro_batches), None
    raise ValueError(f"unknown loss_agg {loss_agg!r}; expected one of {', '.join(LOSS_AGGS)}")


def truncated_is_weight(trainer_logprobs: torch.Tensor, engine_logprobs: torch.Tensor, cap: float) -> torch.Tensor:
    """min(exp(trainer - engine), cap), stop-gradient: [N, T]."""
    import torch

    return torch.exp(trainer_logprobs.detach() - engine_logprobs.detach()).clamp(max=cap)


def mismatch_metrics(trainer_logprobs: torch.Tensor, engine_logprobs: torch.Tensor,
                     mask: torch.Tensor) -> dict[str, float]:
    """Engine-vs-trainer gap on the sampled tokens: k3 KL(engine || trainer) and mean |delta|."""
    tokens = mask.to(trainer_logprobs.dtype).sum().clamp(min=1.0)
    kl, delta = (mismatch_sums(trainer_logprobs, engine_logprobs, mask) / tokens).tolist()
    return {"mismatch/kl": kl, "mismatch/abs_logprob_delta": delta}


def mismatch_sums(trainer_logprobs: torch.Tensor, engine_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[2] on the device: sums over ``mask`` of k3 KL(engine || trainer) and of |delta| (``mismatch_metrics`` x tokens)."""
    import torch

    mask = mask.to(trainer_logprobs.dtype)
    d = (trainer_logprobs.detach() - engine_logprobs.detach().to(trainer_logprobs.dtype)) * mask  # [N, T]
    k3 = (torch.exp(d) - d - 1.0) * mask  # [N, T]
    return torch.stack([k3.sum(), d.abs().sum()])
