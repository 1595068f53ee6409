"""target_logprob: the logprob, entropy and gradient of log_softmax(logits * inv_temp)[target]. Its CUDA path
(fused_target_logprob: no fp32 [C, V] copies, one compiled kernel per pass) runs here on the CPU, eager and
compiled; on a CPU target_logprob itself keeps log_softmax."""

from __future__ import annotations

import pytest
import torch
from retrain.backends import target_logprob as tl


def _reference(logits, targets, inv_temp, g):
    """What logprobs.py computed before: log_softmax in fp32, gather, autograd."""
    x = logits.detach().clone().requires_grad_(True)
    logp = torch.log_softmax(x.float() * inv_temp, dim=-1)  # [C, V]
    lp = logp.gather(-1, targets[:, None])[:, 0]  # [C]
    (lp * g).sum().backward()
    return lp.detach(), -(logp.exp() * logp).sum(-1).detach(), x.grad


def _case(dtype, c=7, v=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(c, v, generator=gen) * 3).to(dtype)  # [C, V]
    targets = torch.randint(0, v, (c,), generator=gen)  # [C]
    g = torch.randn(c, generator=gen)  # [C] the loss's gradient per token
    return logits, targets, g


def _ours(logits, targets, inv_temp, g, fn=tl.fused_target_logprob):
    x = logits.detach().clone().requires_grad_(True)
    lp, ent = fn(x, targets, inv_temp, with_entropy=True)
    (lp * g).sum().backward()
    return lp.detach(), ent, x.grad


@pytest.mark.parametrize("inv_temp", [1.0, 1 / 0.7])
def test_fp32_logprob_entropy_and_gradient_are_log_softmaxs(inv_temp):
    logits, targets, g = _case(torch.float32)
    lp, ent, grad = _ours(logits, targets, inv_temp, g)
    ref_lp, ref_ent, ref_grad = _reference(logits, targets, inv_temp, g)
    assert lp.dtype == ent.dtype == torch.float32 and grad.dtype == torch.float32
    torch.testing.assert_close(lp, ref_lp, rtol=0, atol=2e-6)
    torch.testing.assert_close(ent, ref_ent, rtol=0, atol=2e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-6)
    # by hand for one row: d logp[t] / d z = onehot(t) - softmax(z), times g and inv_temp
    p = torch.softmax(logits[0] * inv_temp, -1)
    expect = -p * g[0] * inv_temp
    expect[targets[0]] += g[0] * inv_temp
    torch.testing.assert_close(grad[0], expect, rtol=0, atol=1e-6)


def test_bf16_logits_give_the_fp32_numbers_and_a_bf16_gradient():
    """bf16 logits (the GPU's): the logprob is log_softmax of their fp32 values, the gradient that of fp32
    rounded once to bf16."""
    logits, targets, g = _case(torch.bfloat16)
    lp, ent, grad = _ours(logits, targets, 1.0, g)
    ref_lp, ref_ent, ref_grad = _reference(logits.float(), targets, 1.0, g)
    torch.testing.assert_close(lp, ref_lp, rtol=0, atol=2e-6)
    torch.testing.assert_close(ent, ref_ent, rtol=0, atol=2e-6)
    assert grad.dtype == torch.bfloat16
    torch.testing.assert_close(grad.float(), ref_grad.to(torch.bfloat16).float(), rtol=0.008, atol=1e-6)


def test_fused_gradient_form_equals_the_eager_one():
    logits, targets, g = _case(torch.float32, seed=3)
    lse = tl._lse(logits, 1.3)
    torch.testing.assert_close(tl._grad_fused(logits, targets, lse, g, 1.3),
                               tl._grad_eager(logits, targets, lse, g, 1.3), rtol=1e-6, atol=1e-7)


def test_compiled_kernels_equal_eager_across_chunk_sizes():
    """Compiled once with dynamic shapes (the last chunk of a batch is shorter): same numbers, no recompile."""
    kernels = tl._Kernels(devices=("cpu",))
    for c in (9, 5):
        logits, targets, g = _case(torch.bfloat16, c=c, seed=c)
        lse = kernels.run("lse", logits, 1.0)
        torch.testing.assert_close(lse, tl._lse(logits, 1.0), rtol=0, atol=2e-6)
        torch.testing.assert_close(kernels.run("entropy", logits, lse, 1.0), tl._entropy(logits, lse, 1.0),
                                   rtol=0, atol=2e-6)
        grad = kernels.run("grad", logits, targets, lse, g, 1.0)
        assert grad.dtype == torch.bfloat16
        torch.testing.assert_close(grad.float(), tl._grad_eager(logits, targets, lse, g, 1.0).float(),
                                   rtol=0.008, atol=1e-6)
    assert not kernels.failed


def test_a_compiler_error_warns_once_and_runs_eager():
    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here")

    kernels = tl._Kernels(devices=("cpu",), backend=broken)
    logits, targets, g = _case(torch.float32)
    with pytest.warns(UserWarning, match="target logprobs: torch.compile failed .*no compiler here"):
        lse = kernels.run("lse", logits, 1.0)
    assert kernels.failed
    torch.testing.assert_close(lse, tl._lse(logits, 1.0))
    kernels.run("lse", logits, 1.0)  # eager from now on: no second warning (pytest would fail on none here)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_cpu_path_gives_the_fused_paths_numbers(dtype):
    logits, targets, g = _case(dtype, seed=7)
    fused = _ours(logits, targets, 1 / 0.7, g)
    plain = _ours(logits, targets, 1 / 0.7, g, fn=tl.target_logprob)
    for a, b in zip(fused, plain, strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=0.008, atol=2e-6)



def test_the_checkpointed_chunks_recompute_the_logsumexp_but_not_the_entropy(monkeypatch):
    """token_stats checkpoints each chunk; backward's recompute stops once the tensors backward needs are back
    (torch's early stop), so the entropy, a detached metric, is computed once per chunk, not twice."""
    from retrain.backends import logprobs

    calls: list[str] = []
    run = tl._Kernels.run
    monkeypatch.setattr(tl._Kernels, "run", lambda self, name, *a: calls.append(name) or run(self, name, *a))
    monkeypatch.setattr(tl, "target_logprob", tl.fused_target_logprob)  # the CUDA path, here on the CPU
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(64, 16, generator=gen, requires_grad=True)  # [M, H]: 4 chunks of 16
    lp, ent = logprobs.token_stats(hidden, torch.randint(0, 50, (64,), generator=gen), head, 0.7, 16, True)
    assert calls == ["lse", "entropy"] * 4 and ent.shape == (64,)
    lp.sum().backward()
    assert calls[8:] == ["lse", "grad"] * 4 and hidden.grad is not None
