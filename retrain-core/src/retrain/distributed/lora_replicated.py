"""LoRA under torchrun without FSDP: the adapter is replicated, its gradients all-reduced once per step.

Chosen by :func:`retrain.distributed.fsdp.shard_backend` when ``[model] lora_rank > 0`` (full
fine-tuning keeps FSDP2). Why: under LoRA the frozen base stays whole on every rank anyway
(sampling needs it), and the trained part is tiny (Qwen2.5-0.5B, r32: ~17M parameters, ~70 MB in
fp32). Sharding it buys no memory worth having, but FSDP2 still pays per-layer hooks, all-gathers
before every forward and backward and copies for every micro-batch (measured: +16% training time
on one rank, +23% on two, docs/performance.md). Here instead:

* every rank holds the same full model (base + adapter) and trains its rows on it exactly as a
  one-process run does (no wrapper, no hooks);
* each rank's loss is its tokens' share of the *global* token mean (the backend divides by the
  all-reduced token count), so micro-batch gradients accumulate locally and, after the last
  backward, ONE ``all_reduce(SUM)`` of a flat fp32 buffer holding every adapter gradient gives
  every rank the one-process gradient of the global batch (no further division);
* clipping and the optimizer step then run on identical gradients on every rank, so the adapter
  copies stay identical (sum of the same numbers in the same order on every rank) and the model
  itself is the sampling model: there is no replica to refresh;
* checkpoints are DCP as under FSDP2 (same parameter names; DCP writes the replicated tensors
  once), so a checkpoint moves between world sizes, this path, FSDP2 and one-process runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrain.distributed.world import RankReductions

if TYPE_CHECKING:
    import torch

    from retrain.distributed.world import World
    from retrain.types import Rollouts


class ReplicatedLoraTrainer(RankReductions):
    """What the backend delegates to (``backend.dist``) in a LoRA run over W ranks: same hooks as FSDP's."""

    mode = "LoRA replicated, one gradient all-reduce per step"

    def __init__(self, backend: Any, world: World) -> None:
        import torch
        import torch.distributed as dist

        self.world = world
        model = backend.model
        self.trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.replica = model  # the model is whole on every rank: it is also the sampling model
        # every rank must start from the same adapter (peft's init is seeded, but make it so)
        if world.size > 1:
            for _, p in self.trainable:
                dist.broadcast(p.data, src=0)
        self.numel = sum(p.numel() for _, p in self.trainable)
        self._flat: torch.Tensor | None = None  # [P] fp32 gradient bucket, allocated on first use

    # -- hooks called by LocalBackend ------------------------------------------------------------
    def logprobs(self, backend: Any, rollouts: Rollouts, rows: slice,
                 with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        return backend.logprobs(rollouts, rows, with_entropy, model=backend.model)  # the one-process path

    def before_backward(self, last: bool) -> None:
        """Nothing: gradients accumulate locally and are reduced in :meth:`reduce_gradients`."""

    def reduce_gradients(self, params: list[torch.Tensor]) -> None:
        """Sum every adapter gradient over the ranks in one all-reduce of a flat buffer (collective).

        Each rank's loss was already divided by the global token count, so the sum is the
        gradient of the global token mean, the one-process gradient of the whole batch.
        """
        import torch
        import torch.distributed as dist

        if self.world.size == 1:
            return
        if self._flat is None:
            self._flat = torch.empty(self.numel, dtype=torch.float32, device=params[0].device)  # [P]
        flat, views, at = self._flat, [], 0
        for p in params:
            n = p.numel()
            view = flat[at:at + n].view_as(p)
            if p.grad is None:  # same layout on every rank, even for a parameter this rank did not reach
                view.zero_()
            else:
                view.copy_(p.grad)
            views.append(view)
            at += n
        dist.all_reduce(flat[:at])
        for p, view in zip(params, views):
            if p.grad is None:
                p.grad = view.to(p.dtype).clone()
            else:
                p.grad.copy_(view)

    def clip_grad_norm(self, params: list[torch.Tensor], max_norm: float) -> float:
        """Norm of the (already all-reduced, identical) gradients, clipped to ``max_norm``."""
        import torch

        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def refresh_replica(self) -> None:
        """Nothing to copy: the trained model is the sampling model."""

    def full_model_state(self) -> dict[str, torch.Tensor]:
        """The whole state dict (no collective needed) for save_adapter / save_weights / split mode."""
        return self.replica.state_dict()


def replicate_lora(backend: Any, world: World) -> ReplicatedLoraTrainer:
    """Set ``backend.dist``; the backend's model stays the sampling model (``backend.sampling_model``)."""
    trainer = ReplicatedLoraTrainer(backend, world)
    backend.dist = trainer
    backend.sampling_model = backend.model
    return trainer
