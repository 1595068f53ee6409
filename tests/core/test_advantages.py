"""Episode advantages (grpo, dr_grpo, maxrl) and the credit assigner, with hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from retrain.advantages.episode import GRPO, DrGRPO, MaxRL, equal_groups
from retrain.testing.contracts import check_advantage

from retrain.testing.builders import make_ctx, make_rollouts

REWARDS = torch.tensor([[1.0, 0.0, 0.0, 1.0],
                        [1.0, 0.0, 0.0, 0.0],
                        [0.3, 0.3, 0.3, 0.3],  # equal, non-zero
                        [0.0, 0.0, 0.0, 0.0]])  # all zero


def test_grpo_hand_computed():
    adv = GRPO()(REWARDS)
    # group 0: mean 0.5, sample std sqrt(4 * 0.25 / 3) = 0.57735
    s0 = math.sqrt(1 / 3) + 1e-4
    assert adv[0].tolist() == pytest.approx([0.5 / s0, -0.5 / s0, -0.5 / s0, 0.5 / s0], rel=1e-6)
    # group 1: mean 0.25, sample std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5
    assert adv[1].tolist() == pytest.approx([0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001], rel=1e-6)
    assert adv[2:].eq(0).all()


def test_grpo_eps_option():
    adv = GRPO(eps=0.0)(REWARDS[1:2])
    assert adv[0].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5])


def test_dr_grpo_hand_computed():
    adv = DrGRPO()(REWARDS)
    assert adv[0].tolist() == [0.5, -0.5, -0.5, 0.5]
    assert adv[1].tolist() == [0.75, -0.25, -0.25, -0.25]
    assert adv[2:].eq(0).all()


def test_maxrl_hand_computed():
    assert MaxRL(eps=0.0)(REWARDS[1:2])[0].tolist() == [3.0, -1.0, -1.0, -1.0]  # 0.75/0.25, -0.25/0.25
    adv = MaxRL()(REWARDS)
    assert adv[0].tolist() == pytest.approx([s * 0.5 / (0.5 + 1e-6) for s in (1, -1, -1, 1)], rel=1e-6)
    assert adv[2:].eq(0).all()  # equal group and all-zero group are exactly 0 (no 0/0)


def test_equal_groups_are_exact_zero_even_with_float_residue():
    r = torch.full((1, 7), 0.3)
    assert (r - r.mean(1, keepdim=True)).abs().max() > 0  # the naive formula leaves a residue
    for adv in (GRPO(), DrGRPO(), MaxRL()):
        assert adv(r).eq(0).all()
    assert equal_groups(REWARDS).tolist() == [False, False, True, True]


@pytest.mark.parametrize("adv", [GRPO(), DrGRPO(), MaxRL()], ids=["grpo", "dr_grpo", "maxrl"])
def test_advantage_contract(adv):
    check_advantage(adv)


def test_sign_rewards_correct_above_incorrect():
    r = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0]])
    for adv in (GRPO(), DrGRPO(), MaxRL()):
        a = adv(r)[0]
        assert (a[[0, 2]] > 0).all() and (a[[1, 3, 4]] < 0).all()


# -- the credit assigner through the registry -------------------------------------------------------
@pytest.fixture(scope="module")
def tok():
    from retrain.testing import tiny_tokenizer

    return tiny_tokenizer()


@pytest.mark.parametrize("mode,expected", [("grpo", GRPO()), ("dr_grpo", DrGRPO()), ("maxrl", MaxRL())])
def test_credit_selects_advantage_and_broadcasts(tok, mode, expected):
    from retrain.advantages.credit import build_credit

    ctx = make_ctx({"algorithm": {"advantage_mode": mode}}, tokenizer=tok)
    credit = build_credit(ctx)
    ro = make_rollouts(tok, ["ab", "abcd", "a", "abc", "xy", "xy"], group_size=3)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    token_adv, m = credit.compute(rewards, ro, step=0)
    ep = expected(rewards.view(2, 3)).reshape(-1)
    assert token_adv.shape == ro.completion_ids.shape
    for i, n in enumerate([2, 4, 1, 3, 2, 2]):
        assert token_adv[i, :n].tolist() == pytest.approx([ep[i].item()] * n)
        assert token_adv[i, n:].eq(0).all()
    assert m["adv/zero_frac"] == 0.5
    assert m["adv/mean_abs"] == pytest.approx(ep.abs().mean().item())
    assert "sepa/lambda" not in m


def test_credit_options_from_section(tok):
    from retrain.advantages.credit import build_credit

    ctx = make_ctx({"algorithm": {"advantage_mode": "maxrl"}, "maxrl": {"eps": 0.0}}, tokenizer=tok)
    credit = build_credit(ctx)
    assert credit.advantage.eps == 0.0


def test_credit_unknown_advantage_names_key(tok):
    from retrain.advantages.credit import build_credit
    from retrain.errors import PluginError

    ctx = make_ctx({"algorithm": {"advantage_mode": "grpoo"}}, tokenizer=tok)
    with pytest.raises(PluginError, match=r'test.toml \[algorithm\] advantage_mode = "grpoo": no such advantage mode. '
                                          r'Did you mean "grpo"\?'):
        build_credit(ctx)


def test_credit_dotted_plain_advantage_function(tok, tmp_path, monkeypatch):
    from retrain.advantages.credit import build_credit

    (tmp_path / "my_adv.py").write_text("def centered(rewards):\n    return rewards - rewards.mean(1, keepdim=True)\n")
    monkeypatch.chdir(tmp_path)
    ctx = make_ctx({"algorithm": {"advantage_mode": "my_adv.centered"}}, tokenizer=tok)
    credit = build_credit(ctx)
    ro = make_rollouts(tok, ["a", "b"], group_size=2)
    token_adv, _ = credit.compute(torch.tensor([1.0, 0.0]), ro, step=0)
    assert token_adv[:, 0].tolist() == [0.5, -0.5]


def test_credit_rejects_ragged_groups(tok):
    from retrain.advantages.credit import build_credit
    from retrain.errors import RetrainError

    credit = build_credit(make_ctx({}, tokenizer=tok))
    ro = make_rollouts(tok, ["a", "b", "c"], group_size=3)
    with pytest.raises(RetrainError, match="2 rewards do not form groups of 3"):
        credit.compute(torch.tensor([1.0, 0.0]), ro, step=0)


# -- maxrl with negative rewards (docs/advantages.md "maxrl with negative rewards") ---------------------
def test_maxrl_negative_group_mean_keeps_the_best_sample_on_top():
    # m = min(0, -1) = -1; s = [0, 0.5, 1, 1.5]; mean 0.75; A = (s - 0.75) / 0.75
    adv = MaxRL(eps=0.0)(torch.tensor([[-1.0, -0.5, 0.0, 0.5]]))[0].tolist()
    assert adv == pytest.approx([-1.0, -1 / 3, 1 / 3, 1.0], abs=1e-7)


def test_maxrl_zero_mean_with_spread_stays_bounded():
    # [-1, 1]: mean 0 (dividing by it would give +-1e6); shifted [0, 2], mean 1 -> [-1, 1]
    assert MaxRL()(torch.tensor([[-1.0, 1.0]]))[0].tolist() == pytest.approx([-1.0, 1.0], rel=1e-5)
    # all negative: [-3, -2, -2, -1] -> s = [0, 1, 1, 2], mean 1 -> [-1, 0, 0, 1]
    assert MaxRL(eps=0.0)(torch.tensor([[-3.0, -2.0, -2.0, -1.0]]))[0].tolist() == [-1.0, 0.0, 0.0, 1.0]


def test_maxrl_non_negative_rewards_are_the_papers_formula():
    r = torch.tensor([[0.5, 1.0, 0.0, 0.25]])  # mean 0.4375, min 0: no shift
    assert MaxRL(eps=0.0)(r)[0].tolist() == pytest.approx([(x - 0.4375) / 0.4375 for x in (0.5, 1.0, 0.0, 0.25)])


def test_advantage_sign_check_names_step_group_and_numbers():
    from retrain.errors import NumericsError
    from retrain.train.guards import check_advantage_signs

    r = torch.tensor([[1.0, 0.0], [-1.0, -0.5]])
    check_advantage_signs(r, MaxRL()(r), step=3)  # the fixed maxrl passes
    old_maxrl = (r - r.mean(1, keepdim=True)) / r.mean(1, keepdim=True)  # the pre-fix formula: [[1, -1], [-1/3, 1/3]]
    with pytest.raises(NumericsError) as info:
        check_advantage_signs(r, old_maxrl, step=3, where='advantage mode "maxrl"')
    assert str(info.value) == (
        'advantage mode "maxrl" at step 3: advantages [0.333333, -0.333333] contradict rewards [-1.0, -0.5] in '
        "group 1 (a sample above the group mean got a negative advantage, or one below it a positive one); it "
        "would push the better samples down.")
    with pytest.raises(NumericsError, match=r"at step 4: non-finite advantages \[nan, 0.0\] for group 0"):
        check_advantage_signs(r, torch.tensor([[float("nan"), 0.0], [0.0, 0.0]]), step=4)


def test_credit_refuses_an_advantage_that_contradicts_the_rewards(tok, tmp_path, monkeypatch):
    """A custom advantage mode that flips signs stops the step through the real credit assigner."""
    from retrain.errors import NumericsError

    (tmp_path / "flip_adv.py").write_text("def flipped(rewards):\n    return rewards.mean(1, keepdim=True) - rewards\n")
    monkeypatch.chdir(tmp_path)
    ctx = make_ctx({"algorithm": {"advantage_mode": "flip_adv.flipped"}}, tokenizer=tok)
    from retrain.advantages.credit import build_credit

    credit = build_credit(ctx)
    rollouts = make_rollouts(tok, ["a", "b", "c", "d"], group_size=2)
    with pytest.raises(NumericsError, match=r'^advantage mode "flip_adv.flipped" at step 7: advantages \[-0.5, 0.5\] '
                                            r"contradict rewards \[1.0, 0.0\] in group 0"):
        credit.compute(torch.tensor([1.0, 0.0, 0.0, 1.0]), rollouts, 7)
