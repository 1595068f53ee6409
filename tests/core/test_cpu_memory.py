"""The default run's CPU memory and speed work (docs/default-run.md, Memory): grouped-query SDPA,
the frozen LoRA base in the autocast dtype, the decode KV cache with reserved room, the heap.
Each must leave the numbers as they were; these tests hold them to it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from retrain.config import config_from_dict
from retrain.types import Generation, Rollouts, RunContext, SamplingParams, Task


def _build(model_dir, **backend):
    from retrain.backends.local import LocalBackend
    from retrain.engines.pytorch import PytorchEngine

    cfg = config_from_dict({"model": {"model": str(model_dir), "lora_rank": 4},
                            "training": {"temperature": 0.7, "lr": 1e-2}})
    ctx = RunContext(config=cfg, registry=None)
    torch.manual_seed(0)
    b = LocalBackend(ctx=ctx, devices="cpu", **backend)
    ctx.backend = b
    return b, PytorchEngine(ctx=ctx)


def _prompts(tok):
    few_shot = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    return [list(tok.apply_chat_template(few_shot + [{"role": "user", "content": t}], add_generation_prompt=True,
                                         tokenize=True, return_dict=True)["input_ids"]) for t in ("hi", "what is 7*6?", "x")]


def _rollouts(prompts, gen, g):
    tasks = [Task(prompt=str(i), answer="") for i in range(len(prompts))]
    return Rollouts.from_generation(tasks, prompts, gen, g)


def _sample(engine, prompts, **kw):
    return engine.generate(prompts, SamplingParams(n=4, max_tokens=10, temperature=0.7, seed=3, **kw))


def _logprobs_and_grads(backend, r):
    backend.model.zero_grad()
    lp, _ = backend.logprobs(r)  # [N, T]
    (lp * r.mask).sum().backward()
    grads = {n: p.grad.clone() for n, p in backend.model.named_parameters() if p.grad is not None}
    return lp.detach(), grads


def test_cpu_gqa_model_uses_sdpa_gqa_with_the_same_numbers(tiny_gqa_model):
    fast, fast_engine = _build(tiny_gqa_model)
    plain, plain_engine = _build(tiny_gqa_model)
    assert fast.model.config._attn_implementation == "sdpa_gqa"
    plain.model.set_attn_implementation("sdpa")  # transformers' own path: K/V heads repeated
    assert plain.model.config._attn_implementation == "sdpa"
    prompts = _prompts(fast.tokenizer)
    a, b = _sample(fast_engine, prompts), _sample(plain_engine, prompts)
    assert a.completion_ids == b.completion_ids
    assert torch.allclose(torch.tensor(sum(a.logprobs, [])), torch.tensor(sum(b.logprobs, [])), atol=1e-5)
    r = _rollouts(prompts, a, 4)
    (lp_a, g_a), (lp_b, g_b) = _logprobs_and_grads(fast, r), _logprobs_and_grads(plain, r)
    assert torch.allclose(lp_a, lp_b, atol=1e-5)
    assert g_a.keys() == g_b.keys() and len(g_a) > 0
    for name in g_a:
        assert torch.allclose(g_a[name], g_b[name], atol=1e-6, rtol=1e-4), name


def test_gpu_and_plain_heads_keep_sdpa(tiny_model, tiny_gqa_model):
    from transformers import AutoModelForCausalLM

    from retrain.backends.attention import use_grouped_attention

    gqa = AutoModelForCausalLM.from_pretrained(tiny_gqa_model)
    assert not use_grouped_attention(gqa, "cuda:0")  # masked enable_gqa is the slow math kernel on CUDA
    assert gqa.config._attn_implementation == "sdpa"
    assert not use_grouped_attention(AutoModelForCausalLM.from_pretrained(tiny_model), "cpu")  # nothing to group


def test_frozen_base_in_bf16_gives_the_fp32_weights_numbers_under_autocast(tiny_gqa_model, tmp_path):
    """autocast casts fp32 weights to bf16 for every matmul; storing the frozen base in bf16 must
    give exactly what that cast gave (logprobs, gradients, samples), with fp32 trained weights."""
    mixed, mixed_engine = _build(tiny_gqa_model, autocast="bfloat16")
    reference, reference_engine = _build(tiny_gqa_model)  # fp32 base ...
    reference.autocast_dtype = torch.bfloat16  # ... under the same autocast: what runs did before
    frozen = {n: p.dtype for n, p in mixed.model.named_parameters() if not p.requires_grad}
    assert frozen["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"] == torch.bfloat16
    assert frozen["base_model.model.model.embed_tokens.weight"] == torch.float32  # embeddings, norms: fp32
    assert frozen["base_model.model.model.norm.weight"] == torch.float32
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters() if p.requires_grad)
    prompts = _prompts(mixed.tokenizer)
    a, b = _sample(mixed_engine, prompts), _sample(reference_engine, prompts)
    assert a.completion_ids == b.completion_ids and a.logprobs == b.logprobs
    r = _rollouts(prompts, a, 4)
    (lp_a, g_a), (lp_b, g_b) = _logprobs_and_grads(mixed, r), _logprobs_and_grads(reference, r)
    assert torch.equal(lp_a, lp_b)
    for name in g_a:
        assert torch.equal(g_a[name], g_b[name]), name
    out = mixed.save_weights(tmp_path / "merged")  # an export in the model's own dtype
    from safetensors.torch import load_file

    weights = load_file(str(next(out.glob("*.safetensors"))))
    assert {w.dtype for w in weights.values()} == {torch.float32}


def test_adapter_inputs_uncast_under_autocast_give_the_cast_numbers(tiny_gqa_model):
    """peft casts each adapter's input to fp32 and autocast casts it straight back to bf16: skipping that
    round trip (what compute_context does) gives bit-identical logprobs and gradients."""
    import contextlib

    import retrain.backends.local as local

    backend, engine = _build(tiny_gqa_model, autocast="bfloat16")
    prompts = _prompts(backend.tokenizer)
    r = _rollouts(prompts, _sample(engine, prompts), 4)
    lp_uncast, g_uncast = _logprobs_and_grads(backend, r)
    real = local.adapter_inputs_uncast
    try:
        local.adapter_inputs_uncast = lambda model: contextlib.nullcontext()  # peft's own cast, as before
        lp_cast, g_cast = _logprobs_and_grads(backend, r)
    finally:
        local.adapter_inputs_uncast = real
    assert torch.equal(lp_uncast, lp_cast)
    assert g_uncast.keys() == g_cast.keys() and all(torch.equal(g_uncast[n], g_cast[n]) for n in g_uncast)


def test_bf16_weights_compute_the_fp32_adapters_in_bf16(tiny_gqa_model):
    """bf16 weights (the GPU default): the adapters keep fp32 weights and gradients (AdamW's precision) but
    their matmuls get bf16 inputs, not fp32 copies of the activations; the pytorch engine still samples."""
    backend, engine = _build(tiny_gqa_model, dtype="bfloat16")
    assert backend.autocast_dtype == torch.bfloat16
    seen = []
    lora_a = next(m for n, m in backend.model.named_modules() if n.endswith("q_proj.lora_A.default"))
    lora_a.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    prompts = _prompts(backend.tokenizer)
    r = _rollouts(prompts, _sample(engine, prompts), 4)
    seen.clear()
    lp, grads = _logprobs_and_grads(backend, r)
    assert seen and set(seen) == {torch.bfloat16}
    assert grads and all(g.dtype == torch.float32 for g in grads.values())
    assert all(p.dtype == torch.float32 for p in backend.model.parameters() if p.requires_grad)
    assert torch.isfinite(lp).all() and (lp <= 0).all()
    assert all(m.cast_input_dtype_enabled for m in backend.model.modules() if hasattr(m, "cast_input_dtype_enabled"))


def _random_adapters(backend, seed=1):
    """Nonzero B (a fresh adapter's B is zero, which would hide any error in how B(A(x)) is added)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in backend.model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


class _CountAddmm(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += func is torch.ops.aten.addmm.default
        return func(*args, **(kwargs or {}))


def test_fused_adapters_give_peft_numbers_in_fp32(tiny_gqa_model):
    """adapters_fused computes scaling * B(A(x)) + base inside one addmm per adapted projection: in fp32
    the logprobs and every gradient are peft's to rounding; outside the context peft's own variant-free
    forward is back."""
    from retrain.backends.frozen import _AddmmLoRA, adapters_fused, fusable_adapters

    backend, engine = _build(tiny_gqa_model)
    assert backend.autocast_dtype is None  # fp32 on CPU: compute_context is a no-op, the context is entered here
    _random_adapters(backend)
    prompts = _prompts(backend.tokenizer)
    r = _rollouts(prompts, _sample(engine, prompts), 4)
    layers = backend.adapter_layers
    with _CountAddmm() as plain_count:
        lp_peft, g_peft = _logprobs_and_grads(backend, r)
    with adapters_fused(fusable_adapters(layers)), _CountAddmm() as fused_count:
        assert all(m.lora_variant.get("default") is _AddmmLoRA for m in layers)
        lp_fused, g_fused = _logprobs_and_grads(backend, r)
    assert fused_count.n - plain_count.n >= len(layers)  # the adapters ran as addmm (at least one forward each)
    assert all(not m.lora_variant for m in layers)
    torch.testing.assert_close(lp_fused, lp_peft, rtol=1e-5, atol=1e-5)
    assert g_fused.keys() == g_peft.keys() and any("lora_A" in n for n in g_peft)
    for n in g_peft:
        torch.testing.assert_close(g_fused[n], g_peft[n], rtol=1e-4, atol=1e-6, msg=n)


def test_fused_adapters_under_bf16_autocast_are_as_close_to_fp32_as_peft(tiny_gqa_model):
    """The GPU's path (compute_context enters adapters_fused on CUDA; here it is entered around it, under the
    CPU's bf16 autocast): fused against peft's mul-and-add (which rounds to bf16 twice more), both measured
    against the same adapters in fp32. Here bf16 alone puts either about 10% off the fp32 gradients (large
    random B, a random tiny model); the fused path must not add to that."""
    from retrain.backends.frozen import adapters_fused, fusable_adapters

    reference, engine = _build(tiny_gqa_model)  # fp32, no autocast
    _random_adapters(reference)
    prompts = _prompts(reference.tokenizer)
    r = _rollouts(prompts, _sample(engine, prompts), 4)
    lp_ref, g_ref = _logprobs_and_grads(reference, r)
    backend, _ = _build(tiny_gqa_model, autocast="bfloat16")
    _random_adapters(backend)
    with backend.compute_context():  # on a CPU: autocast without the fused adapters
        assert all(not m.lora_variant for m in backend.adapter_layers)
    lp_peft, g_peft = _logprobs_and_grads(backend, r)
    with adapters_fused(fusable_adapters(backend.adapter_layers)):
        lp_fused, g_fused = _logprobs_and_grads(backend, r)
    assert not torch.equal(lp_fused, lp_peft)  # the fused path ran: its roundings differ

    def grad_error(g):  # mean relative error of the gradients against fp32
        return sum(float((g[n] - g_ref[n]).norm() / g_ref[n].norm()) for n in g_ref) / len(g_ref)

    assert (lp_fused - lp_ref).abs().max() <= 1.25 * (lp_peft - lp_ref).abs().max()
    assert grad_error(g_fused) <= 1.25 * grad_error(g_peft) and grad_error(g_peft) < 0.2


def _prefilled(model, prompts, extra, repeats, autocast):
    from retrain.backends.logprobs import cache_argument, prefill_prompts
    from retrain.engines.kv_room import reserve_room

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out, cache, att = prefill_prompts(model, prompts, 0, "cpu", cache_argument(model), logits_to_keep=1)
        if extra is None:
            cache.batch_repeat_interleave(repeats)  # transformers' growing cache
        else:
            reserve_room(cache, extra, repeats=repeats)
    return cache, att.repeat_interleave(repeats, dim=0)


@pytest.mark.parametrize("gqa", [False, True])
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("extra", [6, 2])  # 2: fewer slots than tokens, the room doubles
def test_decode_cache_with_room_gives_the_growing_caches_logits(tiny_gqa_model, tiny_model, gqa, autocast, extra):
    from retrain.backends.logprobs import cache_argument
    from retrain.engines.kv_room import RoomLayer

    backend, _ = _build(tiny_gqa_model if gqa else tiny_model)
    model = backend.model.eval()
    prompts = _prompts(backend.tokenizer)
    (grow, att), (room, _) = (_prefilled(model, prompts, None, 3, autocast),
                              _prefilled(model, prompts, extra, 3, autocast))
    assert all(isinstance(layer, RoomLayer) for layer in room.layers)
    assert room.layers[0].keys.dtype == (torch.bfloat16 if autocast else torch.float32)
    assert torch.equal(room.layers[0].keys.float(), grow.layers[0].keys.to(room.layers[0].keys.dtype).float())
    pos = att.sum(1, keepdim=True)  # [N, 1]
    tok = torch.arange(att.shape[0])[:, None] % 7 + 3  # [N, 1] any tokens
    for _ in range(5):
        att = torch.cat([att, torch.ones_like(tok)], dim=1)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            kw = dict(input_ids=tok, attention_mask=att, position_ids=pos, use_cache=True)
            a = model(**kw, **{cache_argument(model): grow}).logits  # [N, 1, V]
            b = model(**kw, **{cache_argument(model): room}).logits  # [N, 1, V]
        assert torch.equal(a, b)
        tok, pos = a.argmax(-1), pos + 1
    assert room.get_seq_length() == grow.get_seq_length()


def test_heap_is_pinned_and_trimmed_in_a_fresh_process():
    """glibc: the mmap threshold is pinned (blocks >= 1 MiB mapped on their own) and a trim hands
    freed heap back: resident memory falls by what was freed between live blocks."""
    code = r"""
import ctypes, os
from retrain.train.memory import fix_mmap_threshold, trim_heap
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1e6
assert fix_mmap_threshold()
libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
blocks = [libc.malloc(1 << 19) for _ in range(800)]  # 512 KiB each: below the threshold, from the heap
for p in blocks:
    libc.memset(p, 1, 1 << 19)
for p in blocks[::2]:  # every other block: the live ones between keep free() from shrinking the heap
    libc.free(p)
before = rss()
trim_heap()
print(before - rss())
"""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) > 150  # of the 200 MB freed, MB handed back by the trim


def test_user_mmap_threshold_is_respected(monkeypatch):
    from retrain.train.memory import fix_mmap_threshold

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert fix_mmap_threshold() is False
