"""The local backend and the pytorch engine on a real tiny model: chunked logprobs, on-policy
agreement between sampler and trainer, seeding, EOS / max_tokens, checkpoints."""

from __future__ import annotations

import pytest
import torch
from retrain.config import config_from_dict
from retrain.types import Rollouts, RunContext, SamplingParams, Task


def _build(tiny_model, lora_rank=4, temperature=0.7, **backend):
    from retrain.backends.local import LocalBackend
    from retrain.engines.pytorch import PytorchEngine

    cfg = config_from_dict({"model": {"model": str(tiny_model), "lora_rank": lora_rank},
                            "training": {"temperature": temperature, "lr": 1e-2}})
    ctx = RunContext(config=cfg, registry=None)
    torch.manual_seed(0)
    backend_obj = LocalBackend(ctx=ctx, devices="cpu", **backend)
    ctx.backend = backend_obj
    return backend_obj, PytorchEngine(ctx=ctx)


def _prompts(tok, texts=("hi", "what is 2+2?", "x")):
    out = []
    for t in texts:
        ids = tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def _rollouts(prompts, gen, g):
    tasks = [Task(prompt=str(i), answer="") for i in range(len(prompts))]
    return Rollouts.from_generation(tasks, prompts, gen, g)


def test_chunked_logprobs_equal_a_full_log_softmax(tiny_model):
    backend, engine = _build(tiny_model, logprob_chunk=5)
    prompts = _prompts(backend.tokenizer)
    gen = engine.generate(prompts, SamplingParams(n=2, max_tokens=12, temperature=0.7, seed=3))
    r = _rollouts(prompts, gen, 2)
    with torch.no_grad():
        chunked, ent = backend.logprobs(r, with_entropy=True)  # [N, T]
        full = torch.zeros_like(chunked)
        full_ent = torch.zeros_like(chunked)
        for i in range(r.n):  # one row at a time, no padding: the plain definition
            ids = torch.tensor([r.prompt_ids[i] + r.completion_ids[i][r.mask[i] > 0].tolist()])
            logits = backend.model(input_ids=ids).logits[0].float() / 0.7  # [L, V]
            logp = torch.log_softmax(logits, -1)
            p = len(r.prompt_ids[i])
            k = int(r.mask[i].sum())
            full[i, :k] = logp[p - 1:p - 1 + k].gather(-1, ids[0, p:p + k, None]).squeeze(-1)
            full_ent[i, :k] = -(logp.exp() * logp).sum(-1)[p - 1:p - 1 + k]
    assert torch.allclose(chunked, full, atol=1e-5)
    assert torch.allclose(ent, full_ent, atol=1e-5)
    assert (chunked[r.mask == 0] == 0).all()


def test_chunked_gradients_equal_unchunked(tiny_model):
    backend, engine = _build(tiny_model, lora_rank=0)
    prompts = _prompts(backend.tokenizer)
    r = _rollouts(prompts, engine.generate(prompts, SamplingParams(n=2, max_tokens=8, seed=1)), 2)
    grads = []
    for chunk in (3, 4096):
        backend.logprob_chunk = chunk
        backend.model.zero_grad()
        lp, _ = backend.logprobs(r)
        lp.sum().backward()
        grads.append(backend.model.lm_head.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


@pytest.mark.parametrize("lora_rank, top_p", [(4, 1.0), (0, 1.0), (4, 0.8)])
def test_engine_logprobs_equal_trainer_logprobs_on_policy(tiny_model, lora_rank, top_p):
    backend, engine = _build(tiny_model, lora_rank=lora_rank)
    prompts = _prompts(backend.tokenizer)
    # move the weights away from init so LoRA is really in the forward
    r0 = _rollouts(prompts, engine.generate(prompts, SamplingParams(n=2, max_tokens=8, seed=0)), 2)
    backend.train_step(r0, torch.ones_like(r0.mask))
    engine.sync(backend, backend.version)
    gen = engine.generate(prompts, SamplingParams(n=4, max_tokens=16, temperature=0.7, top_p=top_p, seed=5))
    assert gen.policy_version == 1
    r = _rollouts(prompts, gen, 4)
    with torch.no_grad():
        backend.model.eval()
        lp, _ = backend.logprobs(r)
    assert (lp - r.logprobs).abs().max().item() < 1e-5
    assert torch.allclose(backend.token_entropy(r), r.entropy, atol=1e-5)
    metrics = backend.train_step(r, torch.ones_like(r.mask))
    assert metrics["loss/ratio_mean"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["loss/clip_frac"] == 0.0
    assert metrics["mismatch/abs_logprob_delta"] < 1e-5


def test_sampling_is_seeded(tiny_model):
    backend, engine = _build(tiny_model)
    prompts = _prompts(backend.tokenizer)
    params = SamplingParams(n=3, max_tokens=10, temperature=1.0, seed=11)
    a, b = engine.generate(prompts, params), engine.generate(prompts, params)
    c = engine.generate(prompts, SamplingParams(n=3, max_tokens=10, temperature=1.0, seed=12))
    assert a.completion_ids == b.completion_ids and a.logprobs == b.logprobs
    assert a.completion_ids != c.completion_ids
    assert len(a.completion_ids) == 9  # B*G rows, groups contiguous


def test_eos_and_max_tokens(tiny_model):
    backend, engine = _build(tiny_model, lora_rank=0)
    with torch.no_grad():  # a flat distribution: EOS comes at a random point in most rows
        backend.model.lm_head.weight.zero_()
    eos = backend.tokenizer.eos_token_id
    prompts = _prompts(backend.tokenizer)
    gen = engine.generate(prompts, SamplingParams(n=16, max_tokens=120, temperature=1.0, seed=2))
    reasons = set(gen.finish_reasons)
    assert reasons == {"stop", "length"}
    for ids, lps, reason, text in zip(gen.completion_ids, gen.logprobs, gen.finish_reasons, gen.texts, strict=True):
        assert len(lps) == len(ids)
        if reason == "stop":
            assert ids[-1] == eos and eos not in ids[:-1]
            assert "<|im_end|>" not in text
        else:
            assert len(ids) == 120 and eos not in ids
    assert all(lp == pytest.approx(-torch.log(torch.tensor(float(backend.model.config.vocab_size))).item(), abs=1e-4)
               for lp in gen.logprobs[0])


def test_checkpoint_round_trip_is_exact(tiny_model, tmp_path):
    backend, engine = _build(tiny_model)
    prompts = _prompts(backend.tokenizer)
    r = _rollouts(prompts, engine.generate(prompts, SamplingParams(n=2, max_tokens=8, seed=0)), 2)
    backend.train_step(r, torch.ones_like(r.mask))
    backend.save_checkpoint(tmp_path / "ck")
    after_save = backend.train_step(r, -torch.ones_like(r.mask))
    state = {k: v.clone() for k, v in backend.model.state_dict().items()}
    fresh, _ = _build(tiny_model)
    fresh.load_checkpoint(tmp_path / "ck")
    assert fresh.version == 1
    again = fresh.train_step(r, -torch.ones_like(r.mask))
    assert again["loss/policy"] == after_save["loss/policy"]
    for k, v in fresh.model.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_micro_batches_and_gradient_checkpointing_give_the_same_step(tiny_model, lora_rank):
    results = []
    for options in ({}, {"micro_batch_size": 2, "gradient_checkpointing": True, "logprob_chunk": 3}):
        backend, engine = _build(tiny_model, lora_rank=lora_rank, **options)
        prompts = _prompts(backend.tokenizer)
        r = _rollouts(prompts, engine.generate(prompts, SamplingParams(n=2, max_tokens=8, seed=4)), 2)
        adv = torch.linspace(-1, 1, r.n).unsqueeze(1).expand_as(r.mask)  # [N, T]
        metrics = backend.train_step(r, adv)
        results.append(metrics)
    m1, m2 = results  # (Adam's first update is ~lr*sign(g): weights are no finer test than the grad norm)
    assert m1["loss/policy"] == pytest.approx(m2["loss/policy"], abs=1e-6)
    assert m1["train/grad_norm"] == pytest.approx(m2["train/grad_norm"], rel=1e-4)
    assert m1["train/tokens"] == m2["train/tokens"]


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_kl_to_the_reference_starts_at_zero_and_grows(tiny_model, lora_rank):
    from retrain.backends.local import LocalBackend
    from retrain.engines.pytorch import PytorchEngine

    cfg = config_from_dict({"model": {"model": str(tiny_model), "lora_rank": lora_rank},
                            "training": {"lr": 5e-2}, "algorithm": {"kl_coef": 0.1}})
    ctx = RunContext(config=cfg, registry=None)
    backend = ctx.backend = LocalBackend(ctx=ctx, devices="cpu")
    engine = PytorchEngine(ctx=ctx)
    prompts = _prompts(backend.tokenizer)
    r = _rollouts(prompts, engine.generate(prompts, SamplingParams(n=2, max_tokens=8, seed=0)), 2)
    first = backend.train_step(r, torch.ones_like(r.mask))
    assert first["loss/kl_ref"] == pytest.approx(0.0, abs=1e-7)  # the policy is the reference at step 0
    second = backend.train_step(r, torch.ones_like(r.mask))
    assert second["loss/kl_ref"] > 1e-5


def test_common_prefix_len_leaves_every_prompt_a_token_of_its_own():
    from retrain.backends.logprobs import common_prefix_len

    assert common_prefix_len([[1, 2, 3, 4], [1, 2, 3, 9, 9], [1, 2, 7]]) == 2
    assert common_prefix_len([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter keeps its last token
    assert common_prefix_len([[5, 6, 7]]) == 2
    assert common_prefix_len([[1, 2], [3, 2]]) == 0


def test_shared_prefix_greedy_decode_equals_a_plain_greedy_loop(tiny_model):
    from retrain.engines.pytorch import decode

    backend, _ = _build(tiny_model)
    prompts = _prompts(backend.tokenizer, ("a much longer question than the others?", "hi", "x y"))
    model = backend.model.eval()
    d = decode(model, prompts, max_tokens=6, temperature=0.0, top_p=1.0, seed=0, eos_ids=set(),
               pad_id=backend.tokenizer.pad_token_id, greedy=True)
    with torch.no_grad():
        for p, got in zip(prompts, d.tokens):
            ids = list(p)
            for _ in range(6):  # no cache, no padding, no shared prefix: the definition
                ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
            assert got == ids[len(p):]


def test_shared_prefix_gradients_equal_per_row_gradients(tiny_model):
    backend, engine = _build(tiny_model, lora_rank=0)
    prompts = _prompts(backend.tokenizer)
    r = _rollouts(prompts, engine.generate(prompts, SamplingParams(n=2, max_tokens=8, seed=1)), 2)
    backend.model.zero_grad()
    lp, _ = backend.logprobs(r)  # [N, T]: shared prompts and common prefix
    lp.sum().backward()
    shared = {n: p.grad.clone() for n, p in backend.model.named_parameters() if p.grad is not None}
    backend.model.zero_grad()
    for i in range(r.n):  # each row alone, no padding
        k = int(r.mask[i].sum())
        ids = torch.tensor([r.prompt_ids[i] + r.completion_ids[i][:k].tolist()])
        logp = torch.log_softmax(backend.model(input_ids=ids).logits[0].float() / 0.7, -1)  # [L, V]
        p = len(r.prompt_ids[i])
        logp[p - 1:p - 1 + k].gather(-1, ids[0, p:p + k, None]).sum().backward()
    for n, p in backend.model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(shared[n], p.grad, atol=1e-4, rtol=1e-4), n


def test_bf16_autocast_runs_bf16_matmuls_over_fp32_weights(tiny_model):
    plain, engine = _build(tiny_model)
    mixed, mixed_engine = _build(tiny_model, autocast="bfloat16")
    assert mixed.autocast_dtype == torch.bfloat16
    prompts = _prompts(plain.tokenizer)
    r = _rollouts(prompts, engine.generate(prompts, SamplingParams(n=2, max_tokens=8, seed=1)), 2)
    with torch.no_grad():
        exact, approx = plain.logprobs(r)[0], mixed.logprobs(r)[0]  # [N, T]
    delta = (exact - approx)[r.mask > 0].abs()
    assert 0 < float(delta.max()) < 0.1  # bf16 matmuls really ran, and stay close to fp32
    gen = mixed_engine.generate(prompts, SamplingParams(n=2, max_tokens=8, seed=1))  # the engine samples under it
    assert len(gen.completion_ids) == 6
    mixed.train_step(r, torch.ones_like(r.mask))
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters() if p.requires_grad)  # fp32 trained weights


@pytest.mark.parametrize("lora_rank", [0, 4])
@pytest.mark.parametrize("autocast", ["none", "bfloat16"])
def test_bf16_weights_keep_the_fast_decode_path(tiny_model, monkeypatch, lora_rank, autocast):
    """bf16 weights (the GPU default): autocast is on only to compute a LoRA run's fp32 adapters in bf16
    (full fine-tuning: off); the fast decode path, which computes in the weights' dtype, stays on."""
    monkeypatch.setenv("RETRAIN_FAST_DECODE", "1")  # on a CPU only when asked
    backend, engine = _build(tiny_model, lora_rank=lora_rank, dtype="bfloat16", autocast=autocast)
    assert backend.autocast_dtype == (torch.bfloat16 if lora_rank else None)
    engine.generate(_prompts(backend.tokenizer), SamplingParams(n=2, max_tokens=4, seed=1))
    assert getattr(engine, "_fast_decoder", None) is not None


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_micro_batches_share_one_forward_of_the_common_prefix(tiny_model, lora_rank):
    """Micro-batches without gradient checkpointing run the prompts' common prefix once per step
    (SharedPrefix) and still give the whole batch's logprobs and gradients."""
    from retrain.backends.logprobs import SharedPrefix, causal_lm_parts, common_prefix_len

    backend, engine = _build(tiny_model, lora_rank=lora_rank)
    prompts = _prompts(backend.tokenizer, ("what is 2+2?", "hi", "x y z", "a longer question here"))
    r = _rollouts(prompts, engine.generate(prompts, SamplingParams(n=2, max_tokens=8, seed=5)), 2)  # N = 8
    c = common_prefix_len(prompts)
    assert c > 0
    params = [p for p in backend.model.parameters() if p.requires_grad]
    backend.model.zero_grad()
    whole, _ = backend.logprobs(r)  # [N, T]
    (whole * r.mask).sum().backward()
    expected = [p.grad.clone() for p in params]

    seen = []  # tokens through the embedding, per forward
    embed = causal_lm_parts(backend.model)[0].get_input_embeddings()
    hook = embed.register_forward_hook(lambda m, args, out: seen.append(args[0].numel()))
    backend.model.zero_grad()
    prefix = SharedPrefix.of(backend.model, r.prompt_ids)
    parts = []
    for s in range(0, r.n, 4):  # 2 micro-batches of 2 prompts x 2 samples
        rows = slice(s, s + 4)
        lp, _ = backend.logprobs(r, rows, prefix=prefix)
        (lp * r.mask[rows]).sum().backward()
        parts.append(lp.detach())
    prefix.backward()
    hook.remove()
    assert seen[0] == c and c not in seen[1:]  # the prefix ran once, first; then suffixes and completions only
    assert torch.allclose(torch.cat(parts), whole.detach(), atol=1e-6)
    for p, g in zip(params, expected):
        assert torch.allclose(p.grad, g, atol=1e-5, rtol=1e-4)


def test_a_micro_batched_step_equals_the_whole_batch_step(tiny_model):
    results = []
    for options in ({}, {"micro_batch_size": 2}):
        backend, engine = _build(tiny_model, **options)
        prompts = _prompts(backend.tokenizer)
        r = _rollouts(prompts, engine.generate(prompts, SamplingParams(n=2, max_tokens=8, seed=4)), 2)
        adv = torch.linspace(-1, 1, r.n).unsqueeze(1).expand_as(r.mask)  # [N, T]
        results.append(backend.train_step(r, adv))
    m1, m2 = results
    assert m1["loss/policy"] == pytest.approx(m2["loss/policy"], abs=1e-6)
    assert m1["train/grad_norm"] == pytest.approx(m2["train/grad_norm"], rel=1e-5)


def test_auto_micro_batches_are_16_rows_on_a_cpu_and_the_whole_batch_on_a_gpu(tiny_model):
    from retrain.backends.local import resolve_micro_batch

    # on a GPU each micro-batch costs a small model a fixed share of a second (the default run on an
    # H100: 4.9 s a step in 8 micro-batches, 0.85-1.15 s whole); on a CPU 16 rows use less memory and time
    assert [resolve_micro_batch("auto", d) for d in ("cpu", "cuda", "cuda:1")] == [16, 0, 0]
    assert resolve_micro_batch(8, "cuda") == 8 and resolve_micro_batch(0, "cpu") == 0
    backend, _ = _build(tiny_model, micro_batch_size="auto")
    assert backend.micro_batch_size == 16  # these tests run on the CPU


def test_every_backend_key_of_the_schema_reaches_the_local_backend():
    """The registry passes a core section's keys that the factory accepts and drops the rest, so a
    [backend] key missing from the factory would be ignored silently ([backend] threads once was)."""
    import inspect
    from dataclasses import fields

    from retrain.backends.local import LocalBackend
    from retrain.backends.plugin import local_backend
    from retrain.config.schema import BackendConfig

    keys = {f.name for f in fields(BackendConfig)} - {"backend"}  # the selector, not an option
    assert keys <= set(inspect.signature(local_backend).parameters)
    assert keys <= set(inspect.signature(LocalBackend).parameters)
