"""Grouped-query attention without repeated keys and values, for CPU runs (``sdpa_gqa``).

transformers' ``sdpa`` path repeats every key/value head ``num_heads / num_kv_heads`` times
(SmolLM2-135M: 3 -> 9) whenever an attention mask is passed, because CUDA's fused kernels need
it. retrain always passes a mask (left padding, the shared-prefix layout), so each forward
materialised the repeated K/V: on the default run that was ~2 GB of short-lived tensors per
decoded token, 18 million page faults and half of the wall time of a generation
(docs/default-run.md, Memory). PyTorch's CPU SDPA handles grouped heads itself
(``enable_gqa=True``, masked or not) with the same numbers, so on CPU the trainer's model uses
this function instead. CUDA keeps ``sdpa``: there a masked ``enable_gqa`` call falls back to the
slow math kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

NAME = "sdpa_gqa"


def sdpa_gqa_forward(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query [N, H, Q, D], key/value [N, kvH, K, D] ->
    ([N, Q, H, D], None)."""
    import torch

    if kwargs.get("position_bias") is not None:  # models with a learned bias: transformers' own path
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = query.shape[2] > 1 and attention_mask is None and causal  # a mask already holds causality
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal,
        enable_gqa=key.shape[1] != query.shape[1])  # [N, H, Q, D]
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Make ``sdpa_gqa`` a transformers attention implementation (with sdpa's masks); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, sdpa_gqa_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_grouped_attention(model: Any, device: str) -> bool:
    """Switch a CPU model with grouped K/V heads from ``sdpa`` to ``sdpa_gqa``; True when it did."""
    config = getattr(model, "config", None)
    if not device.startswith("cpu") or config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    heads, kv_heads = getattr(config, "num_attention_heads", 0), getattr(config, "num_key_value_heads", None)
    if not kv_heads or kv_heads == heads:
        return False
    register()
    model.set_attn_implementation(NAME)
    return model.config._attn_implementation == NAME
