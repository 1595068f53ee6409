"""retrain-hicra: HICRA amplification, the mined-grams detector, and `retrain hicra mine`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from retrain.testing.builders import make_ctx, make_rollouts
from retrain.testing.contracts import check_transform_spec
from retrain_hicra.mine import mine, ngrams
from retrain_hicra.transform import HICRAAmplifier, make_gtpo_hicra



@pytest.fixture(scope="module")
def tok():
    from retrain.testing import tiny_tokenizer

    return tiny_tokenizer()


def test_hicra_amplification_hand_computed():
    adv = torch.tensor([[1.0, 1.0, -2.0, 0.0], [-1.0, -1.0, 0.5, 0.5]])
    planning = torch.tensor([[True, False, True, True], [True, False, True, False]])
    valid = torch.tensor([[True, True, True, True], [True, True, True, False]])
    before = adv.clone()
    out = HICRAAmplifier(0.2)(adv, planning, valid)
    # planning: A + 0.2|A| -> 1.2, -1.6, 0; -0.8, 0.6; others unchanged
    assert torch.allclose(out, torch.tensor([[1.2, 1.0, -1.6, 0.0], [-0.8, -1.0, 0.6, 0.5]]))
    assert torch.equal(adv, before)


@pytest.mark.parametrize("alpha", [0.0, 0.2, 1.0])
def test_gtpo_hicra_contract(alpha):
    check_transform_spec(make_gtpo_hicra(alpha))


def test_negative_alpha_is_a_config_error():
    from retrain.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[hicra\] alpha = -0.1: must be >= 0"):
        make_gtpo_hicra(-0.1)


def test_credit_gtpo_hicra_from_config(tok):
    from retrain.advantages.credit import build_credit

    ctx = make_ctx({"algorithm": {"advantage_mode": "dr_grpo", "transform_mode": "gtpo_hicra"},
                    "gtpo": {"beta": 1.0}, "hicra": {"alpha": 0.5}}, tokenizer=tok)
    credit = build_credit(ctx)
    assert credit.controller is None
    # row 0 "wait ab" with surprisal [1,1,1,1,2,2,2]: GTPO w = h / mean(h) (beta 1), A = +0.5
    ro = make_rollouts(tok, ["wait ab", "wait ab"], 2, logprobs=[[-1, -1, -1, -1, -2, -2, -2]] * 2)
    token_adv, m = credit.compute(torch.tensor([1.0, 0.0]), ro, step=0)
    h = torch.tensor([1, 1, 1, 1, 2, 2, 2.0])
    gtpo = h / h.mean()
    amp = torch.tensor([1.5] * 4 + [1.0] * 3)  # planning: A + 0.5|A| = 1.5 A for A > 0
    assert token_adv[0].tolist() == pytest.approx((0.5 * gtpo * amp).tolist())
    damp = torch.tensor([0.5] * 4 + [1.0] * 3)  # planning: A + 0.5|A| = 0.5 A for A < 0
    assert token_adv[1].tolist() == pytest.approx((-0.5 * gtpo * damp).tolist())
    assert m["planning/frac"] == pytest.approx(4 / 7)


def test_gtpo_hicra_uninstalled_hint(tok):
    """Without the plugin loaded, the name points to the package to install."""
    from retrain.config import config_from_dict
    from retrain.errors import PluginError
    from retrain.plugins import load_plugins

    registry = load_plugins(entry_points=False)
    cfg = config_from_dict({"algorithm": {"transform_mode": "gtpo_hicra"}}, source="run.toml")
    with pytest.raises(PluginError, match=r'run.toml \[algorithm\] transform_mode = "gtpo_hicra": no such transform\..*'
                                          r"\(provided by retrain-hicra: pip install retrain-hicra\)"):
        registry.build("transform", "gtpo_hicra", where="run.toml [algorithm] transform_mode")
    assert cfg.algorithm.transform_mode == "gtpo_hicra"


# -- mining ---------------------------------------------------------------------------------------
FILLER = "we add the numbers then carry over and write the result so the answer is".split()


def _planted_samples(path: Path, n: int = 80, seed: int = 0) -> None:
    """Correct completions usually say "let us double check"; incorrect ones rarely do."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for k in range(n):
            correct = k % 2 == 0
            words = [rng.choice(FILLER) for _ in range(12)]
            if rng.random() < (0.8 if correct else 0.1):
                words[rng.randrange(12):0] = ["let", "us", "double", "check"]
            text = " ".join(words) + f" {rng.randint(0, 99)}"
            f.write(json.dumps({"step": k // 8, "prompt": "p", "completion": text, "reward": float(correct),
                                "reference": "1"}) + "\n")


def test_ngrams_drop_digits_and_symbols():
    assert ngrams("Let me check: 3+4 = 7, ok", 2, 3) == {"let me", "me check", "check ok", "let me check",
                                                          "me check ok"}


def test_miner_finds_planted_phrase(tmp_path):
    _planted_samples(tmp_path / "samples.jsonl")
    from retrain_hicra.mine import read_samples

    grams = mine(read_samples(tmp_path / "samples.jsonl"))
    assert grams and grams[0].phrase == "let us double check"
    assert all(g.phrase not in ("let us", "us double", "double check", "let us double") for g in grams)


def test_mine_command_writes_a_phrases_file_the_detector_reads(tmp_path, tok):
    run = tmp_path / "run"
    run.mkdir()
    _planted_samples(run / "samples.jsonl")
    proc = subprocess.run([sys.executable, "-m", "retrain.cli.main", "hicra", "mine", str(run)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    phrases_file = run / "planning_phrases.txt"
    assert "let us double check" in proc.stdout
    assert phrases_file.read_text().splitlines()[2].startswith("let us double check\t")

    from retrain.advantages.credit import build_credit

    ctx = make_ctx({"algorithm": {"transform_mode": "gtpo_hicra"},
                    "planning": {"detector": "mined-grams", "phrases_file": str(phrases_file)}}, tokenizer=tok)
    credit = build_credit(ctx)
    ro = make_rollouts(tok, ["so let us double check it", "no"], 2)
    mask = credit.detector.detect(ro, tok)
    assert [i for i, v in enumerate(mask[0].tolist()) if v] == list(range(3, 22))


def test_mine_command_needs_both_outcomes(tmp_path):
    (tmp_path / "samples.jsonl").write_text(json.dumps({"step": 1, "completion": "a b", "reward": 1.0}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "retrain.cli.main", "hicra", "mine", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "1 correct and 0 incorrect completions; mining needs both" in proc.stderr


def test_mined_grams_without_file_is_clear(tok):
    from retrain.advantages.credit import build_credit
    from retrain.errors import ConfigError

    ctx = make_ctx({"algorithm": {"transform_mode": "gtpo_hicra"}, "planning": {"detector": "mined-grams"}},
                   tokenizer=tok)
    with pytest.raises(ConfigError, match=r'detector = "mined-grams" needs \[planning\] phrases_file'):
        build_credit(ctx)


def test_mined_grams_detector_contract(tok, tmp_path):
    from retrain.testing.contracts import check_planning_detector
    from retrain_hicra.detector import MinedGramDetector

    (tmp_path / "p.txt").write_text("let me check\t3.1\t5\t0\nanother approach\n")
    check_planning_detector(MinedGramDetector(phrases_file=str(tmp_path / "p.txt")), tok)
