"""retrain's policy-gradient step as Tinker data: rollouts + token advantages -> ``Datum``s for the
SDK's ``cispo`` loss, and the service's answer -> retrain's loss metrics.

Why ``cispo`` (docs/tinker.md has the derivation): the sampler is not the trainer, so retrain's
loop asks for the importance-corrected loss. Its ratio is taken against the trainer's own
logprobs before the update, which equal the current ones in a single optimizer step, so every
``[algorithm] loss`` (ppo, is, gspo, cispo) has the same gradient:

    grad = -(1/M) * sum_t mask_t * A_t * min(exp(lp_t - q_t), tis_cap) * grad lp_t

with q the sampler's logprobs and M the step's token count. Tinker's ``cispo`` loss,
``-sum_t sg(clip(exp(lp_t - q_t), low, high)) * lp_t * adv_t``, has exactly this gradient for
``low = 0``, ``high = tis_cap`` and per-token weights ``adv_t = mask_t * A_t / M``: our token
advantages (already masked and token-mean normalised) are those weights.

Layout of one row (P prompt tokens, k completion tokens): ``model_input = (prompt + completion)[:-1]``,
``target_tokens = (prompt + completion)[1:]``; position ``P - 1 + t`` scores completion token t.
Prompt positions carry weight 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from retrain.types import Rollouts

LOSS_FN = "cispo"


@dataclass
class PolicyBatch:
    datums: list[Any]  # tinker.Datum, one per row with trained tokens
    rows: list[int]  # the rollout row of each datum
    starts: list[int]  # P - 1: index of the first completion token in the datum's arrays
    lengths: list[int]  # k: completion tokens of the datum (up to its last trained token)
    weights: torch.Tensor  # [N, T] the per-token advantage weights sent (mask * A / M)
    denom: float  # M: trained tokens in the step


def loss_config(tis_cap: float) -> dict[str, float]:
    """``cispo`` thresholds that make its clipped ratio retrain's truncated importance weight."""
    return {"clip_low_threshold": 0.0, "clip_high_threshold": float(tis_cap)}


def policy_batch(rollouts: Rollouts, token_advantages: torch.Tensor) -> PolicyBatch:
    """One Datum per row that has trained tokens; advantages become per-token weights."""
    import numpy as np
    import tinker
    import torch

    mask = rollouts.mask.float()  # [N, T]
    denom = float(mask.sum().clamp(min=1.0))
    weights = token_advantages.float() * mask / denom  # [N, T]
    batch = PolicyBatch([], [], [], [], weights, denom)
    for i in range(rollouts.n):
        trained = torch.nonzero(mask[i]).flatten()
        if trained.numel() == 0:
            continue
        k = int(trained[-1]) + 1  # tokens after the last trained one cannot change the loss
        prompt = [int(x) for x in rollouts.prompt_ids[i]]
        full = prompt + rollouts.completion_ids[i, :k].tolist()
        start = len(prompt) - 1
        sampling = np.zeros(len(full) - 1, dtype=np.float32)  # [L]
        adv = np.zeros(len(full) - 1, dtype=np.float32)  # [L]
        sampling[start:] = rollouts.logprobs[i, :k].numpy()
        adv[start:] = weights[i, :k].numpy()
        batch.datums.append(tinker.Datum(
            model_input=tinker.ModelInput.from_ints(full[:-1]),
            loss_fn_inputs={"target_tokens": np.asarray(full[1:], dtype=np.int64), "logprobs": sampling,
                            "advantages": adv}))
        batch.rows.append(i)
        batch.starts.append(start)
        batch.lengths.append(k)
    return batch


def trainer_logprobs(batch: PolicyBatch, outputs: list[dict[str, Any]], shape: tuple[int, int]) -> torch.Tensor:
    """The service's logprobs of the completion tokens, back in the rollout layout: [N, T] (0 elsewhere)."""
    import torch

    if len(outputs) != len(batch.datums):
        raise RuntimeError(f"tinker: forward_backward returned {len(outputs)} outputs for {len(batch.datums)} "
                           "datums; the service answered another request")
    lp = torch.zeros(shape)  # [N, T]
    for out, row, start, k, datum in zip(outputs, batch.rows, batch.starts, batch.lengths, batch.datums, strict=True):
        values = torch.as_tensor(out["logprobs"].tolist(), dtype=torch.float32)  # [L]
        if values.numel() != datum.model_input.length:
            raise RuntimeError(f"tinker: forward_backward returned {values.numel()} logprobs for a datum of "
                               f"{datum.model_input.length} tokens (row {row})")
        lp[row, :k] = values[start:start + k]
    return lp


def expected_loss_sum(trainer_lp: torch.Tensor, engine_lp: torch.Tensor, weights: torch.Tensor,
                      mask: torch.Tensor, tis_cap: float) -> tuple[float, float]:
    """What the service's ``cispo`` loss must sum to for the data sent, and a tolerance for it."""
    import torch

    w = torch.exp(trainer_lp - engine_lp).clamp(0.0, tis_cap)  # [N, T]
    terms = w * trainer_lp * weights * mask  # [N, T]
    return float(-terms.sum()), 1e-5 + 1e-3 * float(terms.abs().sum())
