"""What the fast decode path (``retrain.engines.fast_decode``) can run, and the weights it reads:
each linear layer's effective weight with the active LoRA adapters merged in fp32."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

ARCHITECTURES = ("llama", "qwen2", "qwen3", "mistral")
ROPE_TYPES = ("default", "llama3", "linear")


def base_lm(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports(model: Any) -> str | None:
    """None when :class:`FastDecoder` can run ``model``, else the reason it cannot."""
    lm = base_lm(model)
    cfg = lm.config
    if cfg.model_type not in ARCHITECTURES:
        return f"model_type {cfg.model_type!r} not in {ARCHITECTURES}"
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type not in ROPE_TYPES:
        return f"rope type {rope_type!r} not in {ROPE_TYPES}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"activation {cfg.hidden_act!r} is not silu"
    if getattr(cfg, "use_sliding_window", False):
        return "sliding-window attention"
    return None


def linear_weight(module: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(effective weight, bias) of a linear layer, LoRA deltas of active adapters added in fp32."""
    base = getattr(module, "base_layer", module)
    w = base.weight.detach()
    lora_a = getattr(module, "lora_A", None)
    if lora_a is not None and not getattr(module, "disable_adapters", False) and not module.merged:
        delta = None
        for name in module.active_adapters:
            if name not in lora_a:
                continue
            a = lora_a[name].weight.detach().float()  # [r, in]
            b = module.lora_B[name].weight.detach().float()  # [out, r]
            d = (b @ a) * module.scaling[name]  # [out, in]
            if getattr(module, "fan_in_fan_out", False):
                d = d.T
            delta = d if delta is None else delta + d
        if delta is not None:
            w = (w.float() + delta).to(w.dtype)
    bias = base.bias.detach() if getattr(base, "bias", None) is not None else None
    return w, bias


def cat_bias(biases: list[torch.Tensor | None], sizes: list[int], like: torch.Tensor) -> torch.Tensor | None:
    import torch

    if all(b is None for b in biases):
        return None
    return torch.cat([b if b is not None else like.new_zeros(n) for b, n in zip(biases, sizes)])
