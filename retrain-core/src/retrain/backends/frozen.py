"""A LoRA run's frozen base projections stored in the autocast dtype (``[backend] autocast``).

Under bf16 autocast every matmul casts its fp32 weight to bf16 first. For trained (leaf,
requires-grad) weights autocast caches that copy within a forward; for frozen ones it does not,
so every forward of the 135M default model (each decoded token, each micro-batch) cast ~106M
base weights again: ~0.2 GB of short-lived copies and their time. Keeping the frozen base
projections in bf16 gives the matmuls the very same bf16 values (the cast is round-to-nearest
either way: same logprobs, losses and gradients), halves their memory and skips the casts.
Embeddings, norms (and a tied LM head) stay fp32: they are not matmul inputs autocast would cast.

The adapters themselves stay fp32 (AdamW's updates of 1e-5 would round away in bf16), and peft casts
every adapter's input to their dtype. Under autocast that cast is undone at once (the matmul casts
back to bf16), and with bf16 weights and no autocast the adapters ran as fp32 matmuls on fp32 copies
of the activations: on an H100 those casts and fp32 matmuls were about 40% of a LoRA train step's
kernel time. ``adapter_inputs_uncast`` skips the cast while autocast runs the adapters in bf16.

peft then adds ``B(A(x)) * scaling`` to the base output in two more passes over the [tokens, out]
activations (and two in backward): on an H100 about 8% of a train step's kernel time, for a
rank-32 update. ``adapters_fused`` folds both into the B matmul: ``addmm(base, A(x), B^T,
alpha=scaling)``, one GEMM whose epilogue adds the base output (fewer bf16 roundings, not more). The
backend uses it on CUDA only: on a CPU it was slower (``benchmarks/fused_paths_cpu.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def lora_layers(model: Any) -> list[Any]:
    """The LoRA-wrapped projections of a peft model (each holds ``base_layer`` and ``lora_A``/``lora_B``)."""
    return [m for m in model.modules() if hasattr(m, "base_layer") and hasattr(m, "lora_A")]


def lora_base_layers(model: Any) -> list[Any]:
    """The frozen ``torch.nn.Linear`` under each LoRA-wrapped projection of a peft model."""
    import torch

    return [m.base_layer for m in lora_layers(model) if isinstance(m.base_layer, torch.nn.Linear)]


def store_frozen_base(model: Any, dtype: torch.dtype) -> int:
    """Convert the frozen base projections of a LoRA model to ``dtype`` in place; returns how many."""
    layers = [m for m in lora_base_layers(model) if not any(p.requires_grad for p in m.parameters())]
    for m in layers:
        m.to(dtype)
    return len(layers)


def restore_frozen_base(model: Any, dtype: torch.dtype) -> None:
    """The base projections back in the model's own dtype (a merged export: W + BA computed in it)."""
    for m in lora_base_layers(model):
        m.to(dtype)


@contextlib.contextmanager
def adapter_inputs_uncast(layers: list[Any]) -> Iterator[None]:
    """Within: these LoRA layers (``lora_layers``) pass their input to the (fp32) adapters uncast; autocast, which
    must be on, computes them in its dtype. A LoRA forward outside autocast would fail on the dtypes, so it is
    scoped."""
    layers = [m for m in layers if getattr(m, "cast_input_dtype_enabled", None) is True]
    for m in layers:
        m.cast_input_dtype_enabled = False
    try:
        yield
    finally:
        for m in layers:
            m.cast_input_dtype_enabled = True


class _AddmmLoRA:
    """peft's LoRA-variant protocol (``forward`` only): vanilla LoRA as one ``addmm``. Installed only within
    ``adapters_fused``, so merges and saves outside never see it."""

    @staticmethod
    def forward(module: Any, active_adapter: str, x: torch.Tensor, result: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        import torch

        a = module.lora_A[active_adapter](module.lora_dropout[active_adapter](x))  # [..., r]
        out = torch.addmm(result.reshape(-1, result.shape[-1]), a.reshape(-1, a.shape[-1]),
                          module.lora_B[active_adapter].weight.t(), alpha=module.scaling[active_adapter])  # [tokens, out]
        return out.view(result.shape)


def fusable_adapters(layers: list[Any]) -> list[tuple[Any, str]]:
    """(LoRA layer, adapter name) for each adapter of these layers (``lora_layers``) that ``_AddmmLoRA`` computes
    exactly: plain Linear A and B without bias, over a Linear base, with no variant (DoRA) of its own. Found once
    at start, as the layers are: ``adapters_fused`` runs on every forward."""
    import torch

    return [(m, name) for m in layers
            if isinstance(m.base_layer, torch.nn.Linear) and not getattr(m, "fan_in_fan_out", False)
            for name, a in m.lora_A.items()
            if name not in m.lora_variant and type(a) is torch.nn.Linear
            and type(m.lora_B[name]) is torch.nn.Linear and m.lora_B[name].bias is None]


@contextlib.contextmanager
def adapters_fused(adapters: list[tuple[Any, str]]) -> Iterator[None]:
    """Within: these adapters (``fusable_adapters``) add ``scaling * B(A(x))`` to their layer's base output inside
    the B matmul (``_AddmmLoRA``); A, B and the base output must share a dtype (autocast gives them one).
    Disabled or merged layers run as peft runs them."""
    for m, name in adapters:
        m.lora_variant[name] = _AddmmLoRA
    try:
        yield
    finally:
        for m, name in adapters:
            m.lora_variant.pop(name, None)
