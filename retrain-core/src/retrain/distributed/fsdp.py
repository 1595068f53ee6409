"""FSDP2 for the ``local`` backend: shard the policy over the ranks, keep a full replica for sampling.

:func:`shard_backend` turns a built ``LocalBackend`` into its data-parallel form, in place:

* **Sharding** (``torch.distributed.fsdp.fully_shard``): each decoder layer is its own FSDP unit
  (gathered just before its forward and backward, freed after); the root unit is a small module
  (:class:`LogprobRoot`) whose forward is the trainer's logprob computation, so the root's
  parameters (embeddings, final norm, LM head) are gathered once per micro-batch, however many
  LM-head chunks ``retrain.backends.logprobs`` runs. Every rank then issues the same collectives
  in the same order (same number of rows and micro-batches per rank), whatever its token counts.
* **Gradients** are accumulated locally over micro-batches and reduce-scattered once per step, in
  the last backward; they are summed over ranks (divide factor 1) and each rank's loss is its tokens' share
  of the *global* token mean (the backend divides by the all-reduced token count), so the update
  equals the one-process update of the same global batch.
* **Frozen weights** (the base model under LoRA) stay whole on every rank (``ignored_params``):
  sampling needs them whole anyway, so the replica shares them, and FSDP gathers and reduces only
  the adapter.
* **Sampling** uses a full, unsharded replica of the policy (``backend.sampling_model``): the
  engine runs many small forwards per step whose count differs between ranks (rows stop at EOS),
  so sampling through the sharded model would need matching collectives per token. After every
  optimizer step the trainable parameters are gathered into the replica (``full_tensor()``: for
  LoRA only the adapter, a few MB; for full fine-tuning all weights, ~1 GB for 0.5B in bf16, a few
  ms over NVLink). Cost: one extra copy of the weights per GPU (the CUDA fast path keeps its own
  merged copy on top, as on one GPU). For models where that does not fit, use split mode.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import torch

from retrain.distributed.world import RankReductions

if TYPE_CHECKING:
    from retrain.distributed.world import World
    from retrain.types import Rollouts


class LogprobRoot(torch.nn.Module):
    """FSDP root: ``forward`` = per-token logprobs (and entropy) of a batch of rows under ``model``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, prompt_ids: list[list[int]], completion_ids: torch.Tensor, mask: torch.Tensor, pad_id: int,
                temperature: float, chunk: int, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        from retrain.backends.logprobs import completion_logprobs

        lp, ent = completion_logprobs(self.model, prompt_ids, completion_ids, mask, pad_id=pad_id,
                                      temperature=temperature, chunk=chunk, with_entropy=with_entropy,
                                      common_prefix=False)  # [n, T] x2; FSDP2 reshards between forwards
        return lp.clone(), ent  # not a view: FSDP's pre-backward hook must stay attached


def decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The transformer blocks of a (peft-wrapped) causal LM: ``<prefix>.layers`` (Llama, Qwen, Mistral, ...)."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(lm, getattr(lm, "base_model_prefix", "model"), None)
    layers = getattr(decoder, "layers", None)
    return list(layers) if layers is not None else []


class ShardedTrainer(RankReductions):
    """What the backend delegates to in a distributed run (``backend.dist``)."""

    mode = "FSDP2"

    def __init__(self, backend: Any, world: World) -> None:
        import copy

        from torch.distributed.fsdp import FSDPModule, fully_shard

        self.world = world
        model = backend.model
        # Frozen weights (the base model under LoRA) are not sharded: every rank needs them whole
        # for sampling anyway, so the replica shares them and FSDP gathers only what trains.
        frozen = {p for p in model.parameters() if not p.requires_grad}
        # the replica first: fully_shard replaces the trainable parameters of ``model`` by shards
        self.replica = copy.deepcopy(model, memo={id(p): p for p in frozen}).eval().requires_grad_(False)
        self.root = LogprobRoot(model)
        for layer in decoder_layers(model):
            fully_shard(layer, ignored_params=frozen & set(layer.parameters()) or None)
        fully_shard(self.root, ignored_params=frozen or None)
        for m in self.root.modules():
            if isinstance(m, FSDPModule):
                m.set_gradient_divide_factor(1.0)  # sum over ranks: each rank's loss is already its share
                if world.backend == "gloo":  # gloo has no PREMUL_SUM: plain SUM (then x 1.0)
                    m.set_force_sum_reduction_for_comms(True)
        self.trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.replica_params = dict(self.replica.named_parameters())
        rebuild_optimizer(backend, [p for _, p in self.trainable])

    # -- hooks called by LocalBackend ------------------------------------------------------------
    def logprobs(self, backend: Any, rollouts: Rollouts, rows: slice,
                 with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.root(rollouts.prompt_ids[rows], rollouts.completion_ids[rows], rollouts.mask[rows],
                         backend.tokenizer.pad_token_id, backend.temperature, backend.logprob_chunk, with_entropy)

    def before_backward(self, last: bool) -> None:
        """Accumulate micro-batch gradients locally; reduce-scatter them once, in the last backward."""
        self.root.set_requires_gradient_sync(last, recurse=True)

    def reduce_gradients(self, params: list[torch.Tensor]) -> None:
        """Nothing: FSDP2 reduce-scattered the gradients in the last backward."""

    def clip_grad_norm(self, params: list[torch.Tensor], max_norm: float) -> float:
        """Global gradient norm over the shards of every rank, clipped to ``max_norm``."""
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    @torch.no_grad()
    def refresh_replica(self) -> None:
        """Gather the trainable parameters into the sampling replica (collective: every rank calls it)."""
        for name, p in self.trainable:
            full = p.full_tensor() if hasattr(p, "full_tensor") else p
            self.replica_params[name].copy_(full)

    def full_model_state(self) -> dict[str, torch.Tensor]:
        """The unsharded state dict (collective) for save_adapter / save_weights / split mode."""
        self.refresh_replica()
        return self.replica.state_dict()


def rebuild_optimizer(backend: Any, params: list[torch.Tensor]) -> None:
    """Same optimizer class, hyper-parameters and LR schedule, over the sharded parameters."""
    old, old_sched = backend.optimizer, backend.scheduler
    accepted = inspect.signature(type(old).__init__).parameters
    kw = {k: v for k, v in old.defaults.items() if k in accepted}
    backend.optimizer = type(old)(params, **kw)
    lambdas = getattr(old_sched, "lr_lambdas", None)
    if lambdas:
        backend.scheduler = torch.optim.lr_scheduler.LambdaLR(backend.optimizer, lambdas[0])
    else:
        backend.scheduler = torch.optim.lr_scheduler.LambdaLR(backend.optimizer, lambda s: 1.0)


def shard_backend(backend: Any, world: World) -> Any:
    """Spread ``backend`` (a LocalBackend) over ``world`` in place; sets ``backend.dist`` and ``backend.sampling_model``.

    LoRA (``lora_rank > 0``): the adapter is replicated and its gradients all-reduced once per step
    (:mod:`retrain.distributed.lora_replicated`, faster than sharding a few MB). Full fine-tuning,
    or ``RETRAIN_LORA_FSDP=1`` (for comparisons): FSDP2, this module.
    """
    import os

    if backend.lora and os.environ.get("RETRAIN_LORA_FSDP", "0") != "1":
        from retrain.distributed.lora_replicated import replicate_lora

        return replicate_lora(backend, world)
    trainer = ShardedTrainer(backend, world)
    backend.dist = trainer
    backend.sampling_model = trainer.replica
    return trainer
