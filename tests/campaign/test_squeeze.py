"""LoRA-Squeeze on real peft adapters of a tiny random Llama: exact spectra, hand-checked energies,
compression error, and the compressed adapter loading in peft with close outputs."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from retrain.errors import RetrainError  # noqa: E402
from retrain.squeeze import analyze, compress, format_report  # noqa: E402

R, ALPHA = 4, 16  # scale = alpha / r = 4


def _base(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=40)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def _load_base(base_dir):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(base_dir).eval()


def _set_delta(module, sigma, gen):
    """Set lora_A/lora_B of one peft Linear so that B @ A = U diag(sigma) V^T, with dense factors
    (mixed by a random invertible r x r matrix) so that nothing is trivially diagonal."""
    a, b = module.lora_A["default"].weight, module.lora_B["default"].weight  # [r, in], [out, r]
    r, n_in, n_out = a.shape[0], a.shape[1], b.shape[0]
    u, _ = torch.linalg.qr(torch.randn(n_out, r, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n_in, r, generator=gen, dtype=torch.float64))
    s = torch.tensor(list(sigma) + [0.0] * (r - len(sigma)), dtype=torch.float64)
    mix = torch.randn(r, r, generator=gen, dtype=torch.float64) + 3 * torch.eye(r, dtype=torch.float64)
    b_full = (u * s.sqrt()) @ mix                                    # [out, r]
    a_full = torch.linalg.solve(mix, s.sqrt()[:, None] * v.T)        # [r, in]
    # rows of A beyond the rank are free (B's matching columns are zero before mixing): add noise there
    noise = torch.zeros(r, n_in, dtype=torch.float64)
    noise[len(sigma):] = torch.randn(r - len(sigma), n_in, generator=gen, dtype=torch.float64)
    a_full = a_full + torch.linalg.solve(mix, noise)
    with torch.no_grad():
        a.copy_(a_full.float())
        b.copy_(b_full.float())


def _adapter(tmp_path, spectra, name="adapter", use_rslora=False):
    """A real peft adapter (q_proj, v_proj of a 1-layer Llama) whose deltas B @ A have the given
    singular values (before the alpha / r scale)."""
    from peft import LoraConfig, get_peft_model

    base = _base(tmp_path)
    model = get_peft_model(_load_base(base), LoraConfig(r=R, lora_alpha=ALPHA, target_modules=["q_proj", "v_proj"],
                                                        use_rslora=use_rslora))
    gen = torch.Generator().manual_seed(1)
    attn = model.base_model.model.model.layers[0].self_attn
    _set_delta(attn.q_proj, spectra["q_proj"], gen)
    _set_delta(attn.v_proj, spectra["v_proj"], gen)
    model.save_pretrained(tmp_path / name)
    return base, tmp_path / name


def _layer(report, suffix):
    return next(ly for ly in report["layers"] if ly["name"].endswith(suffix))


def test_exact_rank_and_singular_values(tmp_path):
    _, ad = _adapter(tmp_path, {"q_proj": [3.0, 2.0, 1.0], "v_proj": [3.0, 2.0, 1.0]})
    rep = analyze(ad, energy=0.95).to_json()
    scale = ALPHA / R
    for ly in rep["layers"]:
        assert ly["rank"] == R and ly["scale"] == scale
        assert ly["sigma"][:3] == pytest.approx([3 * scale, 2 * scale, 1 * scale], rel=1e-5)
        assert ly["sigma"][3] < 1e-5  # true rank 3 < r = 4
        assert ly["rank_for_threshold"] == 3
    # energies 9/14, 13/14, 1: 0.95 needs all 3; 0.9 needs 2
    assert rep["recommended_rank"] == 3
    assert analyze(ad, energy=0.9).recommended_rank == 2
    assert analyze(ad, energy=0.9).mean_energy_at_recommended == pytest.approx(13 / 14, rel=1e-6)


def test_energy_is_averaged_over_layers(tmp_path):
    # q: (3, 2, 1) -> energies 9/14, 13/14, 1, 1;  v: (1, 1, 1, 1) -> 1/4, 1/2, 3/4, 1
    _, ad = _adapter(tmp_path, {"q_proj": [3.0, 2.0, 1.0], "v_proj": [1.0, 1.0, 1.0, 1.0]})
    mean = {1: (9 / 14 + 0.25) / 2, 2: (13 / 14 + 0.5) / 2, 3: (1 + 0.75) / 2, 4: 1.0}
    assert analyze(ad, 0.95).recommended_rank == 4
    rep = analyze(ad, 0.85)
    assert rep.recommended_rank == 3
    assert rep.mean_energy_at_recommended == pytest.approx(mean[3], rel=1e-6)
    assert analyze(ad, 0.70).recommended_rank == 2
    assert analyze(ad, 0.70).mean_energy_at_recommended == pytest.approx(mean[2], rel=1e-6)
    assert analyze(ad, 0.40).recommended_rank == 1
    v = _layer(rep.to_json(), "v_proj")
    assert v["energy_at_recommended"] == pytest.approx(0.75, rel=1e-6)
    assert v["rel_frobenius_error_at_recommended"] == pytest.approx(0.5, rel=1e-6)


def _logits(base_dir, adapter_dir):
    from peft import PeftModel

    model = PeftModel.from_pretrained(_load_base(base_dir), adapter_dir).eval()
    ids = torch.arange(2, 22).view(2, 10)
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_lossless_compression_loads_in_peft(tmp_path):
    base, ad = _adapter(tmp_path, {"q_proj": [3.0, 2.0, 1.0], "v_proj": [2.0, 0.5]})
    rep = compress(ad, tmp_path / "small", rank=3).to_json()
    c = rep["compressed"]
    cfg = json.loads((tmp_path / "small" / "adapter_config.json").read_text())
    assert cfg["r"] == 3 and cfg["lora_alpha"] == pytest.approx(ALPHA * 3 / R)  # scale alpha/r kept at 4
    assert c["rel_frobenius_error"] < 1e-5
    before, after = _logits(base, ad), _logits(base, tmp_path / "small")
    lora_effect = (before - _logits_base(base)).abs().max()
    assert lora_effect > 1e-3  # the adapter does change the outputs...
    assert (before - after).abs().max() < 1e-4 * max(1.0, float(before.abs().max()))  # ...and compression does not


def _logits_base(base_dir):
    ids = torch.arange(2, 22).view(2, 10)
    with torch.no_grad():
        return _load_base(base_dir)(input_ids=ids).logits


def test_lossy_compression_error_is_exactly_the_dropped_energy(tmp_path):
    base, ad = _adapter(tmp_path, {"q_proj": [3.0, 2.0, 1.0], "v_proj": [1.0, 1.0, 1.0, 1.0]})
    c = compress(ad, tmp_path / "r2", rank=2).compressed
    q, v = (next(ly for ly in c["layers"] if ly["name"].endswith(s)) for s in ("q_proj", "v_proj"))
    assert q["rel_frobenius_error"] == pytest.approx(math.sqrt(1 / 14), rel=1e-4)
    assert v["rel_frobenius_error"] == pytest.approx(math.sqrt(2 / 4), rel=1e-4)
    overall = math.sqrt((1 * 16 + 2 * 16) / (14 * 16 + 4 * 16))  # squared errors over squared norms (scale 4)
    assert c["rel_frobenius_error"] == pytest.approx(overall, rel=1e-4)
    assert q["predicted"] == pytest.approx(q["rel_frobenius_error"], rel=1e-4)
    _logits(base, tmp_path / "r2")  # still a valid adapter
    assert "relative Frobenius error overall" in format_report(compress(ad, tmp_path / "r2b", rank=2))


def test_rslora_keeps_scale(tmp_path):
    _, ad = _adapter(tmp_path, {"q_proj": [3.0, 2.0, 1.0], "v_proj": [1.0]}, use_rslora=True)
    rep = compress(ad, tmp_path / "out", rank=1)
    assert rep.layers[0]["scale"] == pytest.approx(ALPHA / math.sqrt(R))
    cfg = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert cfg["lora_alpha"] == pytest.approx(ALPHA * math.sqrt(1 / R))


def test_not_an_adapter_is_one_line(tmp_path):
    with pytest.raises(RetrainError, match=r"not a peft LoRA adapter \(needs adapter_config.json"):
        analyze(tmp_path)


def test_campaign_squeeze_step_picks_the_newest_checkpoint_and_compresses(tmp_path):
    import shutil

    from retrain.campaign.squeeze_step import squeeze_run

    _, ad = _adapter(tmp_path, {"q_proj": [3.0, 2.0, 1.0], "v_proj": [3.0, 2.0, 1.0]})
    run = tmp_path / "run"
    for step in (2, 10):  # step 10 sorts after step 2 numerically, not as text
        shutil.copytree(ad, run / "checkpoints" / f"step_{step}" / "backend" / "adapter")
    text = squeeze_run(run, tmp_path / "sq", energy=0.95, compress=True)
    report = json.loads((tmp_path / "sq" / "report.json").read_text())
    assert "step_10" in report["adapter"] and report["recommended_rank"] == 3
    assert report["compressed"]["rel_frobenius_error"] < 1e-5
    assert json.loads((tmp_path / "sq" / "adapter_r3" / "adapter_config.json").read_text())["r"] == 3
    assert "recommended rank 3" in text and (tmp_path / "sq" / "report.txt").read_text().strip() == text
