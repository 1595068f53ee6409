"""Logprob (and entropy) of target tokens from a chunk of logits, without a [C, V] fp32 copy.

``log_softmax(logits.float())[target]`` reads bf16 logits [C, V], writes an fp32 copy, reads it and
writes the fp32 log-probabilities; its backward reads and writes [C, V] fp32 twice more and casts
the gradient back. On an H100 that was about a fifth of a LoRA train step's kernel time. Here the
forward keeps one number per row, ``lse = logsumexp(z)`` with ``z = logits * inv_temp`` in fp32,
and the target's logprob is ``z[target] - lse``; the backward is one pass over the logits:
``d logp / d z = onehot(target) - exp(z - lse)``, scaled by the incoming gradient and ``inv_temp``,
in the logits' dtype. On CUDA each pass is one ``torch.compile``d kernel (the fp32 cast happens in
registers). A CPU keeps ``log_softmax``: there the eager form of these passes was slower (2 cores,
bf16 logits [1024, 49152] at temperature 0.7: about 470 against 370 ms forward and backward,
``benchmarks/fused_paths_cpu.py``), so
``target_logprob`` takes the fused path for CUDA tensors only; tests run that path on the CPU too.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def _scaled(logits: torch.Tensor, inv_temp: float) -> torch.Tensor:
    z = logits.float()  # [C, V] fp32 (no copy when already fp32)
    return z if inv_temp == 1.0 else z * inv_temp


def _lse(logits: torch.Tensor, inv_temp: float) -> torch.Tensor:
    import torch

    return torch.logsumexp(_scaled(logits, inv_temp), dim=-1)  # [C] fp32


def _entropy(logits: torch.Tensor, lse: torch.Tensor, inv_temp: float) -> torch.Tensor:
    logp = _scaled(logits, inv_temp) - lse[:, None]  # [C, V]
    return -(logp.exp() * logp).sum(-1)  # [C]


def _grad_fused(logits: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, g: torch.Tensor,
                inv_temp: float) -> torch.Tensor:
    """d(sum g * logp[target]) / d logits [C, V] in the logits' dtype, as one pointwise pass (compiled)."""
    import torch

    p = (_scaled(logits, inv_temp) - lse[:, None]).exp()  # [C, V] softmax
    hit = torch.arange(logits.shape[-1], device=logits.device)[None] == targets[:, None]  # [C, V]
    return ((hit.float() - p) * (g * inv_temp)[:, None]).to(logits.dtype)


def _grad_eager(logits: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, g: torch.Tensor,
                inv_temp: float) -> torch.Tensor:
    """``_grad_fused``'s numbers with fewer eager passes: the one-hot term is a scatter of C values."""
    scale = (g * inv_temp)[:, None]  # [C, 1]
    grad = (_scaled(logits, inv_temp) - lse[:, None]).exp_().mul_(-scale)  # [C, V] -p * scale
    return grad.scatter_add_(-1, targets[:, None], scale).to(logits.dtype)


_EAGER = {"lse": _lse, "entropy": _entropy, "grad": _grad_eager}
_FUSED = {"lse": _lse, "entropy": _entropy, "grad": _grad_fused}


class _Kernels:
    """The three passes, compiled once per process on first use on one of ``devices``; a compiler error costs
    one warning and the eager forms run from then on."""

    def __init__(self, devices: tuple[str, ...] = ("cuda",), backend: Any = "inductor") -> None:
        self.devices, self.backend = devices, backend
        self.compiled: dict[str, Any] | None = None
        self.failed = False

    def run(self, name: str, *args: Any) -> torch.Tensor:
        import torch

        if self.failed or args[0].device.type not in self.devices:
            return _EAGER[name](*args)
        if self.compiled is None:
            self.compiled = {n: torch.compile(f, backend=self.backend, dynamic=True, fullgraph=True)
                             for n, f in _FUSED.items()}
        try:
            return self.compiled[name](*args)
        except Exception as e:  # a compiler problem must not stop training (an out-of-memory error must)
            from retrain.backends.compiled import is_compile_failure, one_line

            if not is_compile_failure(e):
                raise
            warnings.warn(f"target logprobs: torch.compile failed ({one_line(e)}); continuing with eager kernels",
                          stacklevel=2)
            self.failed = True
            return _EAGER[name](*args)


KERNELS = _Kernels()


def _function() -> Any:
    import torch

    class TargetLogprob(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor, inv_temp: float) -> Any:
            lse = KERNELS.run("lse", logits, inv_temp)  # [C]
            lp = _scaled(logits.gather(-1, targets[:, None])[:, 0], inv_temp) - lse  # [C]
            ctx.save_for_backward(logits, targets, lse)
            ctx.inv_temp = inv_temp
            ctx.mark_non_differentiable(lse)
            return lp, lse

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor, _g_lse: Any) -> Any:
            logits, targets, lse = ctx.saved_tensors
            grad = KERNELS.run("grad", logits, targets, lse, g.contiguous(), ctx.inv_temp)
            return grad, None, None

    return TargetLogprob


_FUNCTION: Any = None


def target_logprob(logits: torch.Tensor, targets: torch.Tensor, inv_temp: float,
                   with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logprob [C] fp32 of ``targets [C]`` under ``softmax(logits [C, V] * inv_temp)``, differentiable in
    ``logits``; its Shannon entropy [C], detached, or None). Fused on CUDA, ``log_softmax`` elsewhere."""
    if logits.is_cuda:
        return fused_target_logprob(logits, targets, inv_temp, with_entropy)
    return _log_softmax_path(logits, targets, inv_temp, with_entropy)


def _log_softmax_path(logits: torch.Tensor, targets: torch.Tensor, inv_temp: float,
                      with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    import torch

    z = logits  # [C, V]
    if inv_temp != 1.0:
        z = logits.float()
        z = z * inv_temp if z is logits else z.mul_(inv_temp)  # in place on the fp32 copy, never on the input
    logp = torch.log_softmax(z, dim=-1, dtype=torch.float32)  # [C, V] fp32
    lp = logp.gather(-1, targets[:, None])[:, 0]  # [C]
    return lp, -(logp.exp() * logp).sum(-1).detach() if with_entropy else None


def fused_target_logprob(logits: torch.Tensor, targets: torch.Tensor, inv_temp: float,
                         with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``target_logprob`` without an fp32 [C, V] copy, on any device (the module docstring)."""
    global _FUNCTION
    if _FUNCTION is None:
        _FUNCTION = _function()
    lp, lse = _FUNCTION.apply(logits, targets, inv_temp)
    ent = KERNELS.run("entropy", logits.detach(), lse, inv_temp) if with_entropy else None
    return lp, ent
