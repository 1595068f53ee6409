"""Token-level credit: GTPO weights, SEPA pooling and controllers, planning masks, TransformSpec."""

from __future__ import annotations

import textwrap

import pytest
import torch

from retrain.advantages import TransformSpec
from retrain.advantages.gtpo import gtpo_weights
from retrain.advantages.sepa import SEPAController, sepa_pool_row, sepa_pool_tensor
from retrain.advantages.transforms import make_gtpo, make_gtpo_sepa, make_none
from retrain.testing.contracts import check_transform_spec

from retrain.testing.builders import make_ctx, make_rollouts


@pytest.fixture(scope="module")
def tok():
    from retrain.testing import tiny_tokenizer

    return tiny_tokenizer()


# -- GTPO -----------------------------------------------------------------------------------------
def test_gtpo_weights_hand_computed():
    h = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 0.0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    # row 0: mean 2 -> rel [0.5, 1, 1.5]; beta 0.5 -> [0.75, 1, 1.25]
    # row 1: mean over valid = 3 -> rel [2/3, 4/3]; beta 0.5 -> [5/6, 7/6]; padding -> 0
    w = gtpo_weights(h, valid, beta=0.5)
    assert w[0].tolist() == pytest.approx([0.75, 1.0, 1.25])
    assert w[1].tolist() == pytest.approx([5 / 6, 7 / 6, 0.0])


def test_gtpo_weights_clamped_at_zero_and_confident_rows():
    h = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    valid = torch.ones(2, 3, dtype=torch.bool)
    w = gtpo_weights(h, valid, beta=3.0)
    assert w[0].tolist() == pytest.approx([0.0, 1.0, 2.5])  # 1 + 3*(0.5-1) = -0.5 -> 0
    assert w[1].tolist() == [1.0, 1.0, 1.0]  # mean 0: no relative uncertainty, weight 1


# -- SEPA pooling -----------------------------------------------------------------------------------
def test_sepa_pool_row_hand_computed():
    # execution tokens 1, 3, 6 (mean 10/3); token 2 is planning and stays
    out = sepa_pool_row([1.0, 2.0, 3.0, 6.0], [0, 1, 0, 0], 0.5)
    assert out == pytest.approx([0.5 * 10 / 3 + 0.5, 2.0, 0.5 * 10 / 3 + 1.5, 0.5 * 10 / 3 + 3.0])
    assert sepa_pool_row([1.0, 2.0, 3.0, 6.0], [0, 1, 0, 0], 1.0) == pytest.approx([10 / 3, 2.0, 10 / 3, 10 / 3])
    assert sepa_pool_row([1.0, 2.0], [0, 1], 0.0) == [1.0, 2.0]
    assert sepa_pool_row([1.0, 2.0], [1, 1], 1.0) == [1.0, 2.0]  # no execution tokens


def test_sepa_pool_tensor_matches_row_version_and_ignores_padding():
    h = torch.tensor([[1.0, 2.0, 3.0, 6.0, 9.0], [4.0, 0.0, 2.0, 0.0, 0.0]])
    planning = torch.tensor([[False, True, False, False, False], [False, False, False, False, False]])
    valid = torch.tensor([[True, True, True, True, False], [True, True, True, False, False]])
    out = sepa_pool_tensor(h, planning, valid, 0.5)
    assert out[0, :4].tolist() == pytest.approx(sepa_pool_row([1.0, 2.0, 3.0, 6.0], [0, 1, 0, 0], 0.5))
    assert out[1, :3].tolist() == pytest.approx(sepa_pool_row([4.0, 0.0, 2.0], [0, 0, 0], 0.5))  # mean 2
    assert out[0, 4] == 9.0 and out[1, 3:].eq(0).all()  # padding untouched


# -- controllers -------------------------------------------------------------------------------------
def test_linear_controller_values():
    c = SEPAController(schedule="linear", delay_steps=2, steps=4, correct_rate_gate=0.0)
    assert [c.lambda_at(s) for s in (0, 1, 2, 3, 4, 5, 6, 10)] == [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    jump = SEPAController(schedule="linear", delay_steps=3, steps=0, correct_rate_gate=0.0)
    assert [jump.lambda_at(s) for s in (3, 4)] == [0.0, 1.0]


def test_auto_controller_values_and_linear_floor():
    c = SEPAController(schedule="auto", delay_steps=100, steps=100, correct_rate_gate=0.0,
                       ema_decay=0.5, warmup=2, var_target=0.2)
    c.observe_execution_variance(4.0)
    assert c.lambda_at(0) == 0.0 and c.var_ref is None  # still warming up
    c.observe_execution_variance(4.0)
    assert c.var_ref == 4.0 and c.lambda_at(0) == 0.0  # ratio 1 -> no pooling
    c.observe_execution_variance(1.0)  # ema 2.5, ratio 0.625 -> (1 - 0.625) / 0.8
    assert c.lambda_at(0) == pytest.approx(0.46875)
    c.observe_execution_variance(0.0)  # ema 1.25, ratio 0.3125 -> 0.859375
    assert c.lambda_at(0) == pytest.approx(0.859375)
    assert c.lambda_at(190) == pytest.approx(0.9)  # linear 0.9 is above auto: never below linear
    c.observe_execution_variance(0.0)  # ema 0.625, ratio 0.15625 < 0.2 -> 1
    assert c.lambda_at(0) == 1.0


def test_correct_rate_gate_is_sticky():
    c = SEPAController(schedule="linear", delay_steps=0, steps=1, correct_rate_gate=0.5)
    c.observe_correct_rate(0.25)
    assert c.lambda_at(5) == 0.0 and not c.gate_open
    c.observe_correct_rate(0.5)
    assert c.lambda_at(5) == 1.0
    c.observe_correct_rate(0.0)
    assert c.gate_open and c.lambda_at(5) == 1.0


def test_controller_state_round_trip():
    a = SEPAController(schedule="auto", correct_rate_gate=0.3, warmup=2, ema_decay=0.5)
    for v in (4.0, 2.0, 1.0):
        a.observe_execution_variance(v)
    a.observe_correct_rate(0.4)
    b = SEPAController(schedule="auto", correct_rate_gate=0.3, warmup=2, ema_decay=0.5)
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    for s in (0, 60, 300):
        assert b.lambda_at(s) == a.lambda_at(s)
    a.observe_execution_variance(0.5)
    b.observe_execution_variance(0.5)
    assert b.lambda_at(7) == a.lambda_at(7)


def test_controller_bad_option_is_one_line_error():
    from retrain.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^run.toml \[sepa\] correct_rate_gate = 1.5: must be in \[0, 1\].$"):
        SEPAController(correct_rate_gate=1.5, where="run.toml [sepa]")


# -- planning detector on a real tokenizer ------------------------------------------------------------
def test_planning_mask_positions(tok):
    from retrain.advantages.planning import StrategicGramDetector

    texts = ["So x=3. Wait, let me check: 3+3=6.", "2+2=4"]
    ro = make_rollouts(tok, texts, group_size=2)
    mask = StrategicGramDetector().detect(ro, tok)
    assert mask.shape == ro.completion_ids.shape and mask.dtype == torch.bool
    marked = [i for i, m in enumerate(mask[0].tolist()) if m]
    # "Wait" = chars 8..11, "let me check" = chars 14..25 (one char per token); ", " between is execution
    assert marked == [*range(8, 12), *range(14, 26)]
    assert not mask[1].any()


def test_planning_word_boundaries_extra_phrases_and_file(tok, tmp_path):
    from retrain.advantages.planning import StrategicGramDetector

    f = tmp_path / "phrases.txt"
    f.write_text("# mined\ncarry the one\t3.2\n\n")
    det = StrategicGramDetector(phrases=["so the answer is"], phrases_file=str(f))
    texts = ["awaiting Carry  the one", "So the answer is 5"]
    ro = make_rollouts(tok, texts, group_size=2)
    mask = det.detect(ro, tok)
    assert [i for i, m in enumerate(mask[0].tolist()) if m] == list(range(9, 23))  # not "await"; any whitespace
    assert [i for i, m in enumerate(mask[1].tolist()) if m] == list(range(0, 16))


def test_planning_phrases_file_missing_is_clear(tok):
    from retrain.advantages.planning import StrategicGramDetector
    from retrain.errors import ConfigError

    with pytest.raises(ConfigError, match=r'\[planning\] phrases_file = "nope.txt": no such file.'):
        StrategicGramDetector(phrases_file="nope.txt")


def test_token_spans_multibyte_bpe():
    """Byte-level BPE: a multi-byte character split over tokens maps both tokens to its span."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from retrain.advantages.planning import token_char_spans

    bytes_ = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(bytes_))}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    bpe = PreTrainedTokenizerFast(tokenizer_object=tk)
    ids = bpe("aé wait", add_special_tokens=False)["input_ids"]  # é is 2 bytes -> 2 tokens
    text, spans = token_char_spans(ids, bpe)
    assert text == "aé wait" and len(ids) == 8
    assert spans[:3] == [(0, 1), (1, 2), (1, 2)]
    assert spans[3:] == [(2, 3), (3, 4), (4, 5), (5, 6), (6, 7)]


# -- TransformSpec contract -----------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [make_none(), make_gtpo(), make_gtpo(beta=0.7), make_gtpo_sepa()],
                         ids=["none", "gtpo", "gtpo_b07", "gtpo_sepa"])
def test_builtin_transforms_pass_contract(spec):
    check_transform_spec(spec)


def test_seed_spec_fields_verbatim():
    spec = TransformSpec(name="x", use_gtpo=True, needs_planning=True, uses_sepa_controller=True,
                         entropy_transform=lambda e, p, lam: e)
    assert (spec.name, spec.use_gtpo, spec.needs_planning, spec.uses_sepa_controller) == ("x", True, True, True)
    assert TransformSpec(name="y").use_gtpo is False


def test_gtpo_sepa_row_and_batched_paths_agree():
    from retrain.testing.contracts import sample_batch, transformed_token_advantages

    batch = sample_batch(seed=3)
    fast = make_gtpo_sepa()
    slow = TransformSpec(name="slow", use_gtpo=True, needs_planning=True, uses_sepa_controller=True,
                         entropy_transform=sepa_pool_row, gtpo_beta=0.1)
    for lam in (0.0, 0.3, 1.0):
        a = transformed_token_advantages(fast, batch, lam)
        b = transformed_token_advantages(slow, batch, lam)
        assert torch.allclose(a, b, atol=1e-6)


def test_contract_catches_mutation():
    def bad(h, planning, valid, lam):
        h.mul_(2.0)
        return h

    with pytest.raises(AssertionError, match="modified its input 'h' in place"):
        check_transform_spec(TransformSpec(name="bad", use_gtpo=True, batched_entropy_transform=bad))


# -- through the credit assigner ------------------------------------------------------------------------
def test_credit_gtpo_sepa_hand_computed(tok):
    from retrain.advantages.credit import build_credit

    ctx = make_ctx({"algorithm": {"advantage_mode": "dr_grpo", "transform_mode": "gtpo_sepa"},
                    "sepa": {"delay_steps": 0, "steps": 0, "correct_rate_gate": 0.0}}, tokenizer=tok)
    credit = build_credit(ctx)
    # row 0 "wait ab": planning w,a,i,t (surprisal 1), execution ' ', a, b (0.5, 1, 3: mean 1.5)
    ro = make_rollouts(tok, ["wait ab", "abc"], 2, logprobs=[[-1, -1, -1, -1, -0.5, -1, -3], [-2, -2, -2]])
    token_adv, m = credit.compute(torch.tensor([1.0, 0.0]), ro, step=1)  # lambda 1: execution -> 1.5 each
    mean = (4 * 1.0 + 3 * 1.5) / 7
    w_plan, w_exec = 1 + 0.1 * (1.0 / mean - 1), 1 + 0.1 * (1.5 / mean - 1)
    assert token_adv[0].tolist() == pytest.approx([0.5 * w_plan] * 4 + [0.5 * w_exec] * 3)
    assert token_adv[1].tolist() == pytest.approx([-0.5] * 3 + [0.0] * 4)  # constant h: weight 1
    assert m["planning/frac"] == pytest.approx(0.4)
    assert m["sepa/lambda"] == 1.0 and m["sepa/gate_open"] == 1.0
    assert m["uncertainty/planning_mean"] == pytest.approx(1.0)
    assert m["uncertainty/execution_mean"] == pytest.approx((0.5 + 1 + 3 + 6) / 6)
    # step 0: lambda 0 -> plain GTPO on the raw surprisal
    credit0 = build_credit(ctx)
    token_adv0, m0 = credit0.compute(torch.tensor([1.0, 0.0]), ro, step=0)
    assert m0["sepa/lambda"] == 0.0
    raw = torch.tensor([1, 1, 1, 1, 0.5, 1, 3])
    assert token_adv0[0].tolist() == pytest.approx((0.5 * (1 + 0.1 * (raw / raw.mean() - 1))).tolist())


def test_credit_gate_closed_keeps_lambda_zero_and_state_resumes(tok):
    from retrain.advantages.credit import build_credit

    data = {"algorithm": {"transform_mode": "gtpo_sepa"},
            "sepa": {"delay_steps": 0, "steps": 2, "correct_rate_gate": 0.5}}
    ro = make_rollouts(tok, ["ab", "cd", "ef", "gh"], 4)
    credit = build_credit(make_ctx(data, tokenizer=tok))
    _, m = credit.compute(torch.tensor([1.0, 0.0, 0.0, 0.0]), ro, step=1)
    assert m["sepa/lambda"] == 0.0 and m["sepa/gate_open"] == 0.0  # correct rate 0.25 < 0.5
    _, m = credit.compute(torch.tensor([1.0, 1.0, 0.0, 0.0]), ro, step=1)
    assert m["sepa/lambda"] == 0.5
    resumed = build_credit(make_ctx(data, tokenizer=tok))
    resumed.load_state_dict(credit.state_dict())
    _, m = resumed.compute(torch.tensor([0.0, 0.0, 0.0, 1.0]), ro, step=2)  # gate stays open
    assert m["sepa/lambda"] == 1.0


def test_credit_entropy_from_backend(tok):
    from retrain.advantages.credit import build_credit

    class Backend:
        tokenizer = tok

        def token_entropy(self, rollouts):
            return torch.tensor([[1.0, 3.0], [2.0, 2.0]])

    ctx = make_ctx({"algorithm": {"advantage_mode": "dr_grpo", "transform_mode": "gtpo",
                                  "uncertainty_kind": "entropy"}, "gtpo": {"beta": 1.0}})
    ctx.backend = Backend()
    token_adv, m = build_credit(ctx).compute(torch.tensor([1.0, 0.0]), make_rollouts(tok, ["ab", "cd"], 2), 0)
    assert token_adv.tolist() == [[0.25, 0.75], [-0.5, -0.5]]  # beta 1: w = h / mean(h)
    assert m["uncertainty/mean"] == 2.0


def test_credit_entropy_without_source_is_clear(tok):
    from retrain.advantages.credit import build_credit
    from retrain.errors import RetrainError

    ctx = make_ctx({"algorithm": {"transform_mode": "gtpo", "uncertainty_kind": "entropy"}}, tokenizer=tok)
    with pytest.raises(RetrainError, match='uncertainty_kind = "entropy": the engine returned no entropy'):
        build_credit(ctx).compute(torch.tensor([1.0, 0.0]), make_rollouts(tok, ["ab", "cd"], 2), 0)


README_EXAMPLE = '''
from retrain.advantages import TransformSpec

def _entropy_transform(entropies, planning_mask, sepa_lambda):
    return [e if m else e + sepa_lambda for e, m in zip(entropies, planning_mask)]

def make_transform_spec():
    return TransformSpec(
        name="entropy_shift",
        use_gtpo=True,
        needs_planning=True,
        uses_sepa_controller=True,
        entropy_transform=_entropy_transform,
    )
'''


def test_readme_custom_transform_next_to_config(tok, tmp_path, monkeypatch):
    """The documented example, verbatim, selected by a dotted path from a config in another folder."""
    from retrain.advantages.credit import build_credit

    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "my_transforms.py").write_text(textwrap.dedent(README_EXAMPLE))
    config_path = tmp_path / "exp" / "run.toml"
    monkeypatch.chdir(tmp_path)  # not the config's folder
    monkeypatch.syspath_prepend(str(tmp_path / "nowhere"))  # restores sys.path afterwards
    data = {"algorithm": {"advantage_mode": "dr_grpo", "transform_mode": "my_transforms.make_transform_spec"},
            "sepa": {"delay_steps": 0, "steps": 0, "correct_rate_gate": 0.0}, "gtpo": {"beta": 1.0}}
    credit = build_credit(make_ctx(data, config_path=config_path, tokenizer=tok))
    assert credit.spec.name == "entropy_shift" and credit.controller is not None
    # "wait" + " ab": execution tokens get +lambda (= 1 at step 1) before GTPO
    ro = make_rollouts(tok, ["wait ab", "abcdefg"], 2, logprobs=[[-1.0] * 7, [-1.0] * 7])
    token_adv, _ = credit.compute(torch.tensor([1.0, 0.0]), ro, step=1)
    h = torch.tensor([1, 1, 1, 1, 2, 2, 2.0])  # beta 1: w = h / mean(h)
    assert token_adv[0].tolist() == pytest.approx((0.5 * h / h.mean()).tolist())
    assert token_adv[1].tolist() == pytest.approx([-0.5] * 7)
    import sys

    sys.modules.pop("my_transforms", None)


def test_transform_returning_wrong_type(tok, tmp_path, monkeypatch):
    from retrain.advantages.credit import build_credit
    from retrain.errors import PluginError

    (tmp_path / "bad_transforms.py").write_text("def make():\n    return {'name': 'x'}\n")
    monkeypatch.chdir(tmp_path)
    ctx = make_ctx({"algorithm": {"transform_mode": "bad_transforms.make"}}, tokenizer=tok)
    with pytest.raises(PluginError, match=r'transform_mode = "bad_transforms.make": returned dict, expected a '
                                          r"TransformSpec"):
        build_credit(ctx)


def test_unknown_transform_hicra_hint(tok):
    from retrain.advantages.credit import build_credit
    from retrain.errors import PluginError

    ctx = make_ctx({"algorithm": {"transform_mode": "gtpo_sepaa"}}, tokenizer=tok)
    with pytest.raises(PluginError, match=r'transform_mode = "gtpo_sepaa": no such transform. Did you mean "gtpo_sepa"\?'):
        build_credit(ctx)


def test_strategic_grams_detector_contract(tok):
    from retrain.advantages.planning import StrategicGramDetector
    from retrain.testing.contracts import check_planning_detector

    check_planning_detector(StrategicGramDetector(), tok)


def test_token_spans_metaspace_leading_spaces():
    """SentencePiece-style "▁word" tokens: a window decoded alone drops the leading space; spans stay right."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from retrain.advantages.planning import phrase_pattern, planning_row, token_char_spans

    vocab = {"<unk>": 0, "▁so": 1, "▁let": 2, "▁me": 3, "▁check": 4, "▁x": 5, "=": 6, "1": 7}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    sp = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>")
    ids = [1, 2, 3, 4, 5, 6, 7]
    text, spans = token_char_spans(ids, sp)
    assert text == "so let me check x=1"
    assert spans == [(0, 2), (2, 6), (6, 9), (9, 15), (15, 17), (17, 18), (18, 19)]
    assert planning_row(ids, sp, phrase_pattern(["let me check"])) == [False, True, True, True, False, False, False]


def test_overlapping_phrases_are_all_marked():
    """"so the answer" then "the answer is": the second starts inside the first; both are planning."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from retrain.advantages.planning import phrase_pattern, planning_row

    vocab = {"<unk>": 0, "so": 1, "the": 2, "answer": 3, "is": 4, "4": 5, "x": 6}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    from tokenizers import decoders

    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>")
    ids = [6, 1, 2, 3, 4, 5]  # "x so the answer is 4"
    assert tok.decode(ids) == "x so the answer is 4"
    pattern = phrase_pattern(["so the answer", "the answer is"])
    assert planning_row(ids, tok, pattern) == [False, True, True, True, True, False]
    # one phrase alone marks only its own tokens
    assert planning_row(ids, tok, phrase_pattern(["so the answer"])) == [False, True, True, True, False, False]
