"""Policy losses against hand-computed numbers (retrain.train.loss)."""

from __future__ import annotations

import math

import pytest
import torch
from retrain.train.loss import mismatch_metrics, policy_loss, truncated_is_weight


def _leaf(values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def test_on_policy_ratio_is_one_and_loss_is_minus_token_mean_advantage():
    lp = _leaf([[-1.0, -2.0], [-0.5, -3.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 1.0], [-0.5, 7.0]], dtype=torch.float64)
    loss, sums = policy_loss(lp, lp.detach(), adv, mask)
    # tokens: -1, -1, +0.5 over 3 trained tokens (the masked 7.0 is ignored)
    assert loss.item() == pytest.approx(-1.5 / 3)
    assert sums.ratio == pytest.approx(3.0)  # ratio 1 on each of the 3 tokens
    assert sums.clipped == 0
    loss.backward()
    assert lp.grad.flatten().tolist() == pytest.approx([-1 / 3, -1 / 3, 0.5 / 3, 0.0])


@pytest.mark.parametrize("ratio, adv, expected_loss, clipped, has_grad", [
    (1.5, 1.0, -1.28, True, False),     # above 1 + eps_high with A > 0: clipped, no gradient
    (1.5, -1.0, 1.5, False, True),      # above with A < 0: the unclipped (pessimistic) term
    (0.5, -1.0, 0.8, True, False),      # below 1 - eps_low with A < 0: clipped
    (0.5, 1.0, -0.5, False, True),      # below with A > 0: unclipped
    (1.1, 2.0, -2.2, False, True),      # inside the trust region
])
def test_ppo_clipping_both_sides(ratio, adv, expected_loss, clipped, has_grad):
    old = torch.tensor([[-1.0]], dtype=torch.float64)
    lp = _leaf([[-1.0 + math.log(ratio)]])
    mask = torch.ones(1, 1, dtype=torch.float64)
    loss, sums = policy_loss(lp, old, torch.tensor([[adv]], dtype=torch.float64), mask, eps_low=0.2, eps_high=0.28)
    assert loss.item() == pytest.approx(expected_loss)
    assert sums.clipped == (1.0 if clipped else 0.0)
    loss.backward()
    expected_grad = -ratio * adv if has_grad else 0.0
    assert lp.grad.item() == pytest.approx(expected_grad)


def test_token_mean_over_the_whole_batch_with_micro_batches():
    torch.manual_seed(0)
    lp = torch.randn(4, 5, dtype=torch.float64)
    old = lp + 0.1 * torch.randn(4, 5, dtype=torch.float64)
    adv = torch.randn(4, 5, dtype=torch.float64)
    mask = (torch.rand(4, 5) > 0.3).double()
    full, _ = policy_loss(lp, old, adv, mask)
    denom = mask.sum()
    halves = sum(policy_loss(lp[s], old[s], adv[s], mask[s], denom=denom)[0]
                 for s in (slice(0, 2), slice(2, 4)))
    assert halves.item() == pytest.approx(full.item())
    # token mean over the batch, not the mean of per-sequence means
    r = torch.exp(lp - old)
    per_token = -torch.minimum(r * adv, r.clamp(0.8, 1.28) * adv)
    assert full.item() == pytest.approx(((per_token * mask).sum() / mask.sum()).item())
    assert full.item() != pytest.approx((per_token * mask).sum(1).div(mask.sum(1)).mean().item())


def test_is_variant_has_no_clip():
    old = torch.tensor([[0.0]], dtype=torch.float64)
    lp = _leaf([[math.log(3.0)]])
    loss, sums = policy_loss(lp, old, torch.tensor([[1.0]], dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
                             kind="is")
    assert loss.item() == pytest.approx(-3.0)
    assert sums.clipped == 0
    loss.backward()
    assert lp.grad.item() == pytest.approx(-3.0)


def test_gspo_uses_the_length_normalised_sequence_ratio():
    old = torch.zeros(1, 3, dtype=torch.float64)
    lp = _leaf([[0.2, 0.4, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    adv = torch.full((1, 3), 2.0, dtype=torch.float64)
    loss, sums = policy_loss(lp, old, adv, mask, kind="gspo", eps_low=0.5, eps_high=0.5)
    s = math.exp((0.2 + 0.4) / 2)  # 1.3499, inside [0.5, 1.5]
    assert loss.item() == pytest.approx(-s * 2.0)  # token mean of -s*A over 2 tokens
    loss.backward()
    assert lp.grad.tolist()[0] == pytest.approx([-s * 2.0 / 2, -s * 2.0 / 2, 0.0])
    # with the default eps the sequence ratio 1.35 > 1.28 is clipped for A > 0
    loss2, sums2 = policy_loss(lp, old, adv, mask, kind="gspo")
    assert loss2.item() == pytest.approx(-1.28 * 2.0)
    assert sums2.clipped == 2


def test_cispo_clips_the_weight_and_keeps_the_gradient():
    old = torch.tensor([[-1.0]], dtype=torch.float64)
    lp = _leaf([[-1.0 + math.log(1.5)]])
    loss, sums = policy_loss(lp, old, torch.tensor([[1.0]], dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
                             kind="cispo")
    assert loss.item() == pytest.approx(-1.28 * lp.item())
    assert sums.clipped == 1
    loss.backward()
    assert lp.grad.item() == pytest.approx(-1.28)  # PPO would give 0 here: CISPO keeps the token's gradient


def test_k3_kl_penalty_against_the_reference():
    lp = _leaf([[math.log(0.25)]])
    ref = torch.tensor([[math.log(0.5)]], dtype=torch.float64)
    mask = torch.ones(1, 1, dtype=torch.float64)
    zero_adv = torch.zeros(1, 1, dtype=torch.float64)
    loss, sums = policy_loss(lp, lp.detach(), zero_adv, mask, ref_logprobs=ref, kl_coef=0.1)
    k3 = 2.0 - math.log(2.0) - 1.0  # exp(d) - d - 1 with d = ln 2
    assert sums.kl_ref == pytest.approx(k3)
    assert loss.item() == pytest.approx(0.1 * k3)
    loss.backward()
    assert lp.grad.item() == pytest.approx(0.1 * (1.0 - 2.0))  # d/dlp of exp(ref-lp)-(ref-lp)-1 = -exp(d)+1


def test_truncated_importance_weight_and_mismatch_metrics():
    trainer = torch.tensor([[math.log(0.5), math.log(0.9)]])
    engine = torch.tensor([[math.log(0.25), math.log(0.9)]])
    w = truncated_is_weight(trainer, engine, cap=1.5)
    assert w.flatten().tolist() == pytest.approx([1.5, 1.0])  # 2.0 capped at 1.5
    m = mismatch_metrics(trainer, engine, torch.ones(1, 2))
    assert m["mismatch/abs_logprob_delta"] == pytest.approx(math.log(2.0) / 2)
    assert m["mismatch/kl"] == pytest.approx((2.0 - math.log(2.0) - 1.0) / 2, rel=1e-5)
    weighted, _ = policy_loss(trainer.double(), trainer.double(), torch.ones(1, 2, dtype=torch.float64),
                              torch.ones(1, 2, dtype=torch.float64), is_weight=w.double())
    assert weighted.item() == pytest.approx(-(1.5 + 1.0) / 2)
