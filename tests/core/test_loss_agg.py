"""[algorithm] loss_agg (TRL's four loss_type behaviours) and kl_estimator, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from retrain.train.loss import aggregation, kl_penalty, policy_loss

# A tiny on-policy batch (ratio 1, so the ppo per-token term is -A):
#   row 0: 3 tokens, A = 1     -> terms -1, -1, -1   (sum -3)
#   row 1: 1 token,  A = -2    -> term  +2           (sum +2)
#   row 2: 2 tokens, A = 0.5   -> terms -0.5, -0.5   (sum -1)
MASK = [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]
ADV = [[1.0, 1.0, 1.0], [-2.0, 9.0, 9.0], [0.5, 0.5, 9.0]]  # 9.0 sits on masked tokens: ignored
LP = [[-1.0, -2.0, -0.5], [-0.3, -1.0, -1.0], [-2.0, -0.1, -1.0]]

HAND = {
    "token_mean": (-3 + 2 - 1) / 6,                       # every token of the step weighs the same
    "seq_mean_token_mean": (-3 / 3 + 2 / 1 + -1 / 2) / 3,  # mean of per-sequence means
    "seq_mean_token_sum_norm": (-3 + 2 - 1) / (3 * 4),     # constant N * max_tokens (max_tokens = 4)
    "micro_token_mean": ((-3 + 2) / 4 + (-1) / 2) / 2,     # micro-batches {0, 1} and {2}, then their mean
}
# d loss / d lp for each trained token: -A * (row scale) / denom
HAND_GRAD = {
    "token_mean": [[-1 / 6] * 3, [2 / 6, 0, 0], [-0.5 / 6, -0.5 / 6, 0]],
    "seq_mean_token_mean": [[-1 / 9] * 3, [2 / 3, 0, 0], [-0.5 / 6, -0.5 / 6, 0]],
    "seq_mean_token_sum_norm": [[-1 / 12] * 3, [2 / 12, 0, 0], [-0.5 / 12, -0.5 / 12, 0]],
    "micro_token_mean": [[-1 / 8] * 3, [2 / 8, 0, 0], [-0.5 / 4, -0.5 / 4, 0]],
}


def _step_loss(loss_agg: str, micro: int = 2, max_tokens: int = 4):
    lp = torch.tensor(LP, dtype=torch.float64, requires_grad=True)
    mask, adv = torch.tensor(MASK, dtype=torch.float64), torch.tensor(ADV, dtype=torch.float64)
    n = mask.shape[0]
    total = torch.zeros((), dtype=torch.float64)
    for s in range(0, n, micro):
        rows = slice(s, min(n, s + micro))
        denom, row_scale = aggregation(loss_agg, mask[rows], step_tokens=float(mask.sum()), step_rows=n,
                                       max_tokens=max_tokens, step_micro_batches=math.ceil(n / micro))
        loss, sums = policy_loss(lp[rows], lp[rows].detach(), adv[rows], mask[rows], denom=denom, row_scale=row_scale)
        assert sums.objective == pytest.approx(loss.item())
        total = total + loss
    total.backward()
    return total.item(), lp.grad.tolist()


@pytest.mark.parametrize("loss_agg", sorted(HAND))
def test_each_loss_agg_matches_the_hand_computed_loss_and_gradient(loss_agg):
    value, grad = _step_loss(loss_agg)
    assert value == pytest.approx(HAND[loss_agg])
    for got, want in zip(grad, HAND_GRAD[loss_agg]):
        assert got == pytest.approx(want)


@pytest.mark.parametrize("loss_agg", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_step_level_aggregations_do_not_depend_on_micro_batching(loss_agg):
    assert _step_loss(loss_agg, micro=1)[0] == pytest.approx(_step_loss(loss_agg, micro=3)[0])


def test_micro_token_mean_depends_on_micro_batching_as_trl_bnpo_does():
    one_batch, _ = _step_loss("micro_token_mean", micro=3)
    assert one_batch == pytest.approx(HAND["token_mean"])  # one micro-batch: the plain token mean
    assert _step_loss("micro_token_mean", micro=1)[0] == pytest.approx(HAND["seq_mean_token_mean"])


def test_the_default_is_bit_identical_to_the_token_mean_formula():
    torch.manual_seed(0)
    lp = torch.randn(4, 6, dtype=torch.float32)
    old, ref = lp + 0.1 * torch.randn(4, 6), lp + 0.2 * torch.randn(4, 6)
    adv, mask = torch.randn(4, 6), (torch.rand(4, 6) > 0.3).float()
    denom, row_scale = aggregation("token_mean", mask, step_tokens=float(mask.sum()), step_rows=4, max_tokens=6,
                                   step_micro_batches=1)
    assert row_scale is None and denom == float(mask.sum())
    loss, _ = policy_loss(lp, old, adv, mask, denom=denom, ref_logprobs=ref, kl_coef=0.05)
    # the formula before loss_agg existed, op for op
    r = torch.exp((lp - old) * mask)
    per_token = -torch.minimum(r * adv, r.clamp(0.8, 1.28) * adv)
    delta = (ref - lp) * mask
    k3 = (torch.exp(delta) - delta - 1.0) * mask
    before = (per_token * mask).sum() / torch.as_tensor(denom) + 0.05 * k3.sum() / torch.as_tensor(denom)
    assert torch.equal(loss, before)


@pytest.mark.parametrize("estimator, expected, grad", [
    # policy p = 1/4, reference q = 1/2 on the sampled token: d = lp - ref = -ln 2
    ("k1", -math.log(2.0), 1.0),
    ("k2", 0.5 * math.log(2.0) ** 2, -math.log(2.0)),
    ("k3", 2.0 - math.log(2.0) - 1.0, 1.0 - 2.0),
    ("low_var_kl", 2.0 - math.log(2.0) - 1.0, 1.0 - 2.0),
])
def test_kl_estimators_on_one_token(estimator, expected, grad):
    lp = torch.tensor([[math.log(0.25)]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[math.log(0.5)]], dtype=torch.float64)
    mask = torch.ones(1, 1, dtype=torch.float64)
    loss, sums = policy_loss(lp, lp.detach(), torch.zeros(1, 1, dtype=torch.float64), mask, ref_logprobs=ref,
                             kl_coef=0.1, kl_estimator=estimator)
    assert sums.kl_ref == pytest.approx(expected)
    assert loss.item() == pytest.approx(0.1 * expected)
    loss.backward()
    assert lp.grad.item() == pytest.approx(0.1 * grad)


def test_low_var_kl_is_clamped_and_masked_tokens_never_count():
    lp = torch.tensor([[-20.0, -1e4]])  # the second token is padding: exp(ref - lp) would overflow to inf
    ref = torch.tensor([[-1.0, -1.0]])
    mask = torch.tensor([[1.0, 0.0]])
    assert kl_penalty(lp, ref, mask, "low_var_kl").tolist() == [[10.0, 0.0]]
    assert kl_penalty(lp, ref, mask, "k3")[0, 0].item() == pytest.approx(math.exp(19.0) - 19.0 - 1.0, rel=1e-5)
    assert kl_penalty(lp, ref, mask, "k1").tolist() == [[-19.0, 0.0]]


def test_backend_reports_the_objective_of_the_chosen_aggregation(tiny_model):
    from retrain.backends.local import LocalBackend
    from retrain.config import config_from_dict
    from retrain.engines.pytorch import PytorchEngine
    from retrain.types import Rollouts, RunContext, SamplingParams, Task

    torch.set_num_threads(1)
    out = {}
    for agg in ("token_mean", "seq_mean_token_mean"):
        cfg = config_from_dict({"model": {"model": str(tiny_model), "lora_rank": 4},
                                "algorithm": {"loss_agg": agg}, "training": {"max_tokens": 8}})
        ctx = RunContext(config=cfg, registry=None)
        torch.manual_seed(0)
        backend = LocalBackend(ctx=ctx, devices="cpu", micro_batch_size=2)
        ctx.backend = backend
        prompts = [list(backend.tokenizer("ab")["input_ids"]), list(backend.tokenizer("xyz")["input_ids"])]
        gen = PytorchEngine(ctx=ctx).generate(prompts, SamplingParams(n=2, max_tokens=8, seed=4))
        r = Rollouts.from_generation([Task("a", ""), Task("b", "")], prompts, gen, 2)
        adv = torch.tensor([1.0, -1.0, 0.5, 2.0]).unsqueeze(1).expand_as(r.mask)  # [N, T]
        lengths = r.mask.sum(1)  # [N]
        out[agg] = (backend.train_step(r, adv), lengths)
    (m_tok, lengths), (m_seq, _) = out["token_mean"], out["seq_mean_token_mean"]
    a = torch.tensor([1.0, -1.0, 0.5, 2.0])
    # on-policy (ratio 1 up to float rounding): the per-token term is -A
    assert m_tok["loss/objective"] == pytest.approx(float(-(a * lengths).sum() / lengths.sum()), abs=1e-4)
    assert m_seq["loss/objective"] == pytest.approx(float(-a.mean()), abs=1e-4)
    assert m_seq["loss/policy"] == pytest.approx(m_tok["loss/policy"], abs=1e-4)  # same token-mean metric
