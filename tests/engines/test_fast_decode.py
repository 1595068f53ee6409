"""The fast decode path computes what transformers and the trainer compute (CPU, fp32, eager mode).

The CUDA-graph capture itself only runs on a GPU (benchmarks/bench_grpo.py checks it there against
the plain path); everything it replays is the same ``_decode_step`` tested here.
"""

from __future__ import annotations

import pytest
import torch

from retrain.backends.logprobs import completion_logprobs
from retrain.engines.fast_decode import FastDecoder, supports

PROMPTS = [[5, 9, 12, 7, 30], [40, 41], [3, 3, 8, 60, 61, 62, 70, 2]]


def tiny_qwen2(lora: bool = True, seed: int = 0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = Qwen2Config(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    if not lora:
        return model
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for name, p in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: make the adapter matter
            torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def trainer_logprobs(model, prompts, n, tokens, temperature, with_entropy=False):
    rows = [p for p in prompts for _ in range(n)]
    t = max(len(x) for x in tokens)
    ids = torch.zeros(len(tokens), t, dtype=torch.long)  # [N, T]
    mask = torch.zeros(len(tokens), t)  # [N, T]
    for i, x in enumerate(tokens):
        ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
    with torch.no_grad():
        lp, ent = completion_logprobs(model, rows, ids, mask, pad_id=0, temperature=temperature, chunk=64,
                                      with_entropy=with_entropy)
    return lp, ent, mask


def test_supports_names_the_reason():
    from transformers import AutoModelForCausalLM, GPT2Config

    assert supports(tiny_qwen2(lora=False)) is None
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    assert supports(gpt2) == "model_type 'gpt2' not in ('llama', 'qwen2', 'qwen3', 'mistral')"


def test_greedy_matches_transformers_generate_with_lora():
    model = tiny_qwen2()
    dec = FastDecoder(model)
    out = dec.generate(PROMPTS, n=1, max_tokens=12, temperature=0.0)
    ids = torch.zeros(len(PROMPTS), 8, dtype=torch.long)
    att = torch.zeros_like(ids)
    for i, p in enumerate(PROMPTS):  # left padding, as the engine does
        ids[i, 8 - len(p):] = torch.tensor(p)
        att[i, 8 - len(p):] = 1
    with torch.no_grad():
        ref = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=12, do_sample=False,
                             min_new_tokens=12, pad_token_id=0, eos_token_id=None)[:, 8:]
    assert out.tokens == ref.tolist()
    assert out.finish_reasons == ["length"] * 3


def test_sampled_logprobs_and_entropy_equal_the_trainers():
    model = tiny_qwen2()
    dec = FastDecoder(model)
    out = dec.generate(PROMPTS, n=4, max_tokens=10, temperature=0.7, want_entropy=True, seed=3)
    assert len(out.tokens) == 12 and all(len(x) == 10 for x in out.tokens)
    lp, ent, mask = trainer_logprobs(model, PROMPTS, 4, out.tokens, 0.7, with_entropy=True)
    assert torch.allclose(torch.tensor(out.logprobs), lp, atol=1e-4)
    assert torch.allclose(torch.tensor(out.entropy), ent, atol=1e-4)
    # groups are contiguous and the samples of one prompt differ
    assert len({tuple(x) for x in out.tokens[:4]}) > 1


def test_long_completions_attend_a_growing_window_with_the_trainers_numbers():
    """Decode step k attends to P + 64 * ceil(k / 64) slots, not the whole cache: past two window
    boundaries (150 tokens) every logprob is still the trainer's, which sees every earlier token."""
    model = tiny_qwen2()
    dec = FastDecoder(model)
    out = dec.generate(PROMPTS, n=2, max_tokens=150, temperature=1.0, seed=4)
    s = next(iter(dec.sessions.values()))
    assert (s.p, s.s) == (64, 214)
    assert [s.width(k) for k in (1, 64, 65, 128, 129, 149)] == [128, 128, 192, 192, 214, 214]
    lp, _, mask = trainer_logprobs(model, PROMPTS, 2, out.tokens, 1.0)
    assert mask.sum() == 6 * 150
    assert torch.allclose(torch.tensor(out.logprobs), lp, atol=1e-4)


def test_seeded_and_top_p_limit():
    model = tiny_qwen2()
    dec = FastDecoder(model)
    a = dec.generate(PROMPTS, n=2, max_tokens=8, temperature=1.0, seed=1)
    b = dec.generate(PROMPTS, n=2, max_tokens=8, temperature=1.0, seed=1)
    c = dec.generate(PROMPTS, n=2, max_tokens=8, temperature=1.0, seed=2)
    assert a.tokens == b.tokens and a.tokens != c.tokens
    greedy = dec.generate(PROMPTS, n=2, max_tokens=8, temperature=0.0)
    nucleus = dec.generate(PROMPTS, n=2, max_tokens=8, temperature=1.0, top_p=1e-6, seed=5)
    assert nucleus.tokens == greedy.tokens  # top_p -> 0 keeps only the most likely token


def test_stop_tokens_and_min_tokens():
    model = tiny_qwen2()
    dec = FastDecoder(model)
    free = dec.generate(PROMPTS, n=1, max_tokens=12, temperature=0.0)
    stop = free.tokens[0][2]
    first = free.tokens[0].index(stop)  # row 0 stops at the first occurrence, the stop token kept
    out = dec.generate(PROMPTS, n=1, max_tokens=12, temperature=0.0, stop_ids=[stop])
    assert out.tokens[0] == free.tokens[0][:first + 1] and out.finish_reasons[0] == "stop"
    forced = dec.generate(PROMPTS, n=1, max_tokens=12, temperature=0.0, stop_ids=[stop], min_tokens=12)
    assert all(len(x) == 12 and stop not in x for x in forced.tokens)
    assert forced.finish_reasons == ["length"] * 3


def test_sync_follows_new_lora_weights():
    model = tiny_qwen2()
    dec = FastDecoder(model)
    before = dec.generate(PROMPTS, n=1, max_tokens=10, temperature=0.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name:
                p.mul_(-3.0)
    stale = dec.generate(PROMPTS, n=1, max_tokens=10, temperature=0.0)
    assert stale.tokens == before.tokens  # private weights: unchanged until sync
    dec.sync(model)
    after = dec.generate(PROMPTS, n=1, max_tokens=10, temperature=0.0)
    lp, _, _ = trainer_logprobs(model, PROMPTS, 1, after.tokens, 1.0)
    assert after.tokens != before.tokens
    assert torch.allclose(torch.tensor(after.logprobs), lp, atol=1e-4)


def test_llama_tiny_model(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    dec = FastDecoder(model)
    out = dec.generate([[2, 10, 11, 12], [2, 20]], n=3, max_tokens=6, temperature=1.0, seed=0)
    lp, _, _ = trainer_logprobs(model, [[2, 10, 11, 12], [2, 20]], 3, out.tokens, 1.0)
    assert torch.allclose(torch.tensor(out.logprobs), lp, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_matches_eager():
    model = tiny_qwen2().cuda()
    eager = FastDecoder(model, use_graphs=False).generate(PROMPTS, n=2, max_tokens=150, temperature=0.0)
    graph = FastDecoder(model, use_graphs=True).generate(PROMPTS, n=2, max_tokens=150, temperature=0.0)
    assert graph.tokens == eager.tokens


def test_engine_hook_cpu_off_by_default_and_resyncs_on_new_version(monkeypatch):
    from types import SimpleNamespace

    from retrain.engines.fast_decode import generate_fast
    from retrain.types import SamplingParams

    model = tiny_qwen2()
    engine = SimpleNamespace(version=0)  # the hook only reads .version and caches its decoder on it
    params = SamplingParams(n=2, max_tokens=5, temperature=0.0, min_tokens=5)
    monkeypatch.delenv("RETRAIN_FAST_DECODE", raising=False)
    assert generate_fast(engine, model, PROMPTS, params, {1}, 0) is None  # CPU: plain path
    monkeypatch.setenv("RETRAIN_FAST_DECODE", "1")
    first = generate_fast(engine, model, PROMPTS, params, {1}, 0)
    assert first is not None and all(len(x) == 5 for x in first.tokens)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name:
                p.mul_(-3.0)
    assert generate_fast(engine, model, PROMPTS, params, {1}, 0).tokens == first.tokens  # same version
    engine.version = 1
    moved = generate_fast(engine, model, PROMPTS, params, {1}, 0)
    lp, _, _ = trainer_logprobs(model, PROMPTS, 2, moved.tokens, 1.0)
    assert torch.allclose(torch.tensor(moved.logprobs), lp, atol=1e-4)


def test_compiled_draw_equals_the_eager_one():
    """The decode step's sampler is compiled on CUDA (``FastDecoder._draw``, one pure function); inductor on this
    CPU must give the eager tokens, logprobs and entropies for sampled, top-p and banned-token draws."""
    torch.manual_seed(0)
    logits = (torch.randn(6, 97) * 3).to(torch.bfloat16)  # [N, V]
    race = torch.empty(6, 97).exponential_()  # [N, V]
    ban = torch.zeros(97, dtype=torch.bool)
    ban[logits.float().argmax(-1)] = True  # the likeliest tokens may not be drawn
    inv_temp, top_p = torch.tensor([1 / 0.7]), torch.tensor([0.8])
    compiled = torch.compile(FastDecoder._draw, dynamic=True, fullgraph=True)
    for r, use_top_p in ((race, False), (race, True)):  # each is its own compilation (greedy: eager tests above)
        eager = FastDecoder._draw(logits, r, ban, inv_temp, top_p, use_top_p)
        fused = compiled(logits, r, ban, inv_temp, top_p, use_top_p)
        assert torch.equal(eager[0], fused[0]) and not ban[eager[0]].any()
        assert torch.allclose(eager[1], fused[1], atol=1e-5) and torch.allclose(eager[2], fused[2], atol=1e-5)
    logp = torch.log_softmax(logits.float() * inv_temp, -1)  # [N, V]
    tok, lp, ent = FastDecoder._draw(logits, race, ban, inv_temp, top_p, False)
    assert torch.allclose(lp, logp.gather(-1, tok[:, None])[:, 0], atol=1e-5)  # of the full tempered distribution
    assert torch.allclose(ent, -(logp.exp() * logp).sum(-1), atol=1e-5)
