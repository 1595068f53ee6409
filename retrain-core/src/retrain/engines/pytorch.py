"""The ``pytorch`` engine: samples from the trainer's own model in-process (docs/training.md, "The pytorch engine").

All B*G rows of a step are decoded together: one prefill (each distinct prompt once, their
common prefix once: the trainer's layout, ``retrain.backends.logprobs.prefill_prompts``), then
one forward per token with a KV cache
(``DynamicCache``). LoRA stays unmerged (applied by peft in each forward): merging and unmerging
would perturb the base weights in floating point, and the point of this engine is that its
logprobs equal the trainer's (``shares_weights = True``: no importance correction needed).

Logprobs are those of the sampled token under the temperature-scaled *full* distribution
softmax(logits / T), also with top_p < 1 (the nucleus only restricts which tokens can be drawn).
The trainer computes exactly that quantity, so the PPO ratio is 1 on-policy. Entropy is the
Shannon entropy of the same distribution.

``[inference] device`` (split mode in one process): the engine samples from a full copy of the
policy on that device, its trained weights copied at each sync (``sample_from_snapshot``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrain.engines.fast_decode import generate_fast
from retrain.types import Generation, SamplingParams

if TYPE_CHECKING:
    import torch

    from retrain.types import RunContext


@dataclass
class Decoded:
    tokens: list[list[int]]  # N
    logprobs: list[list[float]]  # N
    entropy: list[list[float]]  # N
    finish_reasons: list[str]  # N


def sample_next(logits: torch.Tensor, temperature: float, top_p: float,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sampling step on logits [N, V]: (token [N], logprob [N], entropy [N]) at ``temperature``."""
    import torch

    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # [N, V]
    probs = logp.exp()  # [N, V]
    entropy = -(probs * logp).sum(-1)  # [N]
    broken = ~torch.isfinite(probs).all(-1, keepdim=True)  # [N, 1]: NaN/inf logits (broken weights)
    if broken.any():  # sample uniformly there; the NaN logprob goes out for train/guards.py to report
        probs = torch.where(broken, torch.full_like(probs, 1.0 / probs.shape[-1]), probs)  # [N, V]
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)  # [N, V]
        keep = (sorted_p.cumsum(-1) - sorted_p) < top_p  # [N, V]; the top token is always kept
        sorted_p = sorted_p * keep
        pick = torch.multinomial(sorted_p, 1, generator=generator)  # [N, 1]
        token = order.gather(-1, pick).squeeze(-1)  # [N]
    else:
        token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # [N]
    lp = logp.gather(-1, token.unsqueeze(-1)).squeeze(-1)  # [N]
    return token, lp, entropy


def decode(model: Any, prompt_ids: list[list[int]], *, max_tokens: int, temperature: float, top_p: float,
           seed: int, eos_ids: set[int], pad_id: int, greedy: bool = False, row_ids: list[int] | None = None,
           group_size: int = 1, min_tokens: int = 0) -> Decoded:
    """The sampling core: prefill the prompts, then one cached forward per token until EOS or max_tokens.

    ``prompt_ids`` are the N rows (already repeated G times per prompt). ``row_ids``: global row
    numbers; when given, each row's random draws are keyed by (seed, row, step), independent of
    the batch it is in (``retrain.distributed.sampling``; distributed runs). ``group_size``: rows
    come in contiguous groups of identical prompts; each prompt is prefilled once and its KV cache
    repeated. ``min_tokens``: EOS is masked out before that many tokens (benchmarks).
    """
    import torch

    from retrain.backends.logprobs import cache_argument, prefill_prompts
    from retrain.engines.kv_room import reserve_room

    device = next(model.parameters()).device
    n = len(prompt_ids)
    gen = torch.Generator(device=device).manual_seed(seed)
    g = group_size if group_size > 1 and n % group_size == 0 else 1
    cache_kw = cache_argument(model)
    # prefill one row per group (their common prefix once): cache and logits repeated G times
    out, cache, att = prefill_prompts(model, [list(x) for x in prompt_ids[::g]], pad_id, device, cache_kw,
                                      logits_to_keep=1)  # att [N/G, C+S]
    reserve_room(cache, max_tokens, repeats=g)  # each prompt's K/V to its G rows, room for the completions
    if g > 1:
        out.logits = out.logits.repeat_interleave(g, dim=0)  # [N, 1, V]
        att = att.repeat_interleave(g, dim=0)  # [N, C+S]
    next_pos = att.sum(1, keepdim=True)  # [N, 1]: positions count real tokens
    done = torch.zeros(n, dtype=torch.bool, device=device)  # [N]
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=device)
    toks, lps, ents = [], [], []
    keyed = None if row_ids is None else torch.tensor(row_ids, dtype=torch.long, device=device)  # [N]
    for step_idx in range(max_tokens):
        logits = out.logits[:, -1]  # [N, V]
        if step_idx < min_tokens:
            logits = logits.index_fill(-1, eos, float("-inf"))
        if greedy:
            logp = torch.log_softmax(logits.float(), dim=-1)  # [N, V]
            tok = logp.argmax(-1)  # [N]
            lp = logp.gather(-1, tok.unsqueeze(-1)).squeeze(-1)  # [N]
            ent = -(logp.exp() * logp).sum(-1)  # [N]
        elif keyed is not None:
            from retrain.distributed.sampling import keyed_sample

            tok, lp, ent = keyed_sample(logits, temperature, top_p, seed, keyed, step_idx)  # [N] x3
        else:
            tok, lp, ent = sample_next(logits, temperature, top_p, gen)  # [N] x3
        tok = tok.masked_fill(done, pad_id)
        toks.append(tok)
        lps.append(lp)
        ents.append(ent)
        done = done | torch.isin(tok, eos)
        if bool(done.all()):
            break
        att = torch.cat([att, torch.ones(n, 1, dtype=att.dtype, device=device)], dim=1)  # [N, L+1]
        out = model(input_ids=tok.unsqueeze(1), attention_mask=att, position_ids=next_pos, use_cache=True,
                    **{cache_kw: cache})
        next_pos = next_pos + 1
    tok_t = torch.stack(toks, 1).cpu() if toks else torch.zeros(n, 0, dtype=torch.long)  # [N, T]
    lp_t = torch.stack(lps, 1).float().cpu() if lps else torch.zeros(n, 0)  # [N, T]
    ent_t = torch.stack(ents, 1).float().cpu() if ents else torch.zeros(n, 0)  # [N, T]
    result = Decoded([], [], [], [])
    for i in range(n):
        row = tok_t[i].tolist()
        k = next((j + 1 for j, x in enumerate(row) if x in eos_ids), None)
        length = k if k is not None else len(row)
        result.tokens.append(row[:length])
        result.logprobs.append(lp_t[i, :length].tolist())
        result.entropy.append(ent_t[i, :length].tolist())
        result.finish_reasons.append("stop" if k is not None else "length")
    return result


def stop_token_ids(tokenizer: Any, model: Any) -> set[int]:
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, (list, tuple)):
        ids.update(int(x) for x in gen_eos)
    return ids


def sampling_device(device: str, trainer: Any) -> Any:
    """``[inference] device`` as a torch device, checked against this machine and the trainer's ``trainer``."""
    import torch

    from retrain.backends.local import check_devices_present
    from retrain.errors import ConfigError

    kind, _, index = device.partition(":")
    target = torch.device("cuda", int(index or 0)) if kind in ("gpu", "cuda") else torch.device(kind)
    if target.type != trainer.type:
        raise ConfigError(f'[inference] device = "{device}" is a {target.type} device and the trainer runs on '
                          f"{trainer}: the engine computes like the trainer only on the same kind of device; name a "
                          f'{trainer.type} device, or use a server engine (openai, vllm) for other hardware.')
    check_devices_present(device, "[inference] device")  # that GPU exists here
    return target


def _copied(tensor: Any, device: Any) -> Any:
    """A copy of a parameter or buffer on ``device`` (never the same storage), for ``copy.deepcopy``'s memo."""
    import torch

    data = tensor.detach().to(device, copy=True)
    return torch.nn.Parameter(data, requires_grad=tensor.requires_grad) if isinstance(tensor, torch.nn.Parameter) else data


class PytorchEngine:
    """In-process sampler from the trainer's own weights (KV cache, whole step batched, seeded)."""

    shares_weights = True  # samples from the trainer's model: ratio 1 on-policy, no IS correction

    def __init__(self, ctx: RunContext | None = None) -> None:
        if ctx is None or ctx.backend is None or not hasattr(ctx.backend, "model"):
            from retrain.errors import ConfigError

            raise ConfigError("[inference] engine = \"pytorch\" samples from the trainer's model in-process and "
                              "needs a backend that holds one (the `local` backend); use an openai/vllm engine otherwise.")
        self.backend = ctx.backend
        self.version = self.backend.version
        self.snapshot: Any = None  # asynchronous schedules: the policy copy it samples from (sample_from_snapshot)
        self._snapshot_pairs: list[tuple[Any, Any]] = []  # (snapshot tensor, trainer tensor) refreshed by sync
        self._stream: Any = None  # CUDA, asynchronous schedules: sampling's own stream, beside the trainer's
        device = ctx.config.inference.device
        if device:  # split mode in one process: a full copy of the policy there
            self.sample_from_snapshot(sampling_device(device, next(self.backend.model.parameters()).device))

    @property
    def samples_from_copy(self) -> bool:
        """Sampling from a copy refreshed by :meth:`sync`: the loop's post-sync probe checks it."""
        return self.snapshot is not None

    def sample_from_snapshot(self, device: Any = None) -> None:
        """From now on sample from a private copy of the policy, refreshed by each :meth:`sync`.

        For ``[training] max_staleness`` > 0: the optimizer changes the trainer's weights in place
        while the next batch is sampled. Frozen tensors (a LoRA run's base weights) are shared,
        not copied: the copy costs the trained weights once more (the adapter; all of them when
        fully fine-tuning). ``device`` (``[inference] device``): the whole policy is copied there,
        frozen weights too, once; syncs copy the trained ones. Already sampling from a copy: no-op.
        """
        import copy

        import torch

        if self.snapshot is not None:
            return
        model = self.backend.model
        if device is None:
            memo = {id(p): p for p in model.parameters() if not p.requires_grad}
        else:  # every tensor the model registers, copied straight to the device (the trainer's never doubled)
            memo = {id(t): _copied(t, device) for t in (*model.parameters(), *model.buffers())}
        self.snapshot = copy.deepcopy(model, memo).eval()
        pairs = zip(self.snapshot.named_parameters(), model.named_parameters(), strict=True)
        self._snapshot_pairs = [(s, p) for (sn, s), (n, p) in pairs if p.requires_grad and sn == n]
        if len(self._snapshot_pairs) != sum(p.requires_grad for p in model.parameters()):
            raise RuntimeError("pytorch engine: the policy snapshot does not mirror the trainer's parameters")
        self.snapshot.requires_grad_(False)
        sampling_on = next(self.snapshot.parameters()).device
        if sampling_on.type == "cuda":  # kernels of the sampler thread must not queue behind the optimizer's
            self._stream = torch.cuda.Stream(sampling_on)

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation:
        """B prompts -> N = B*n rows (groups contiguous), sampled with a KV cache in one batch."""
        import torch

        from retrain.train.guards import check_context

        model, tok = self.backend.model, self.backend.tokenizer
        if getattr(self.backend, "sampling_model", None) is not None:  # FSDP: a full replica (retrain.distributed)
            model = self.backend.sampling_model
        if self.snapshot is not None:  # asynchronous schedule: the policy as of the last sync
            model = self.snapshot
        check_context(model, prompt_ids, params.max_tokens)  # a too-long prompt: one line, not a huge allocation
        rows = [list(p) for p in prompt_ids for _ in range(params.n)]
        offset = getattr(params, "row_offset", None)  # distributed: first global prompt of this batch
        row_ids = None if offset is None else list(range(offset * params.n, offset * params.n + len(rows)))
        was_training = model.training
        model.eval()
        compute = getattr(self.backend, "compute_context", contextlib.nullcontext)  # [backend] autocast
        mixed = getattr(self.backend, "autocast_dtype", None)
        autocast = mixed not in (None, getattr(self.backend, "dtype", None))  # matmuls below the weights' dtype
        on_stream, on_device = contextlib.nullcontext(), contextlib.nullcontext()
        if self._stream is not None:  # start after the last sync's snapshot copy (queued on the trainer's stream)
            self._stream.wait_stream(torch.cuda.current_stream(self._stream.device))
            on_stream = torch.cuda.stream(self._stream)
            on_device = torch.cuda.device(self._stream.device)  # graphs, seeds, streams of the sampling GPU
        try:
            with torch.no_grad(), on_device, on_stream:
                # CUDA fast path (merged LoRA, static KV cache, CUDA graphs): retrain/engines/fast_decode.py.
                # It computes in the weights' dtype, so autocast runs take the plain path below instead.
                d = None if autocast else generate_fast(self, model, prompt_ids, params, stop_token_ids(tok, model),
                                                        tok.pad_token_id)
                if d is None:
                    with compute():
                        d = decode(model, rows, max_tokens=params.max_tokens, temperature=params.temperature,
                                   top_p=params.top_p, seed=params.seed, eos_ids=stop_token_ids(tok, model),
                                   pad_id=tok.pad_token_id, greedy=params.temperature <= 0, row_ids=row_ids,
                                   group_size=params.n, min_tokens=getattr(params, "min_tokens", 0))
        finally:
            model.train(was_training)
        texts = tok.batch_decode(d.tokens, skip_special_tokens=True)
        return Generation(completion_ids=d.tokens, logprobs=d.logprobs, finish_reasons=d.finish_reasons,
                          texts=texts, policy_version=self.version, entropy=d.entropy)

    def sync(self, backend: Any, version: int) -> None:
        """Records the policy version; nothing to copy (same weights in memory) unless sampling from a snapshot."""
        import torch

        if backend is not self.backend:
            raise RuntimeError("pytorch engine: sync from a different backend than the one it samples from")
        with torch.no_grad():
            for copy_, trained in self._snapshot_pairs:
                copy_.copy_(trained)
        if self._snapshot_pairs and self._stream is not None:  # [inference] device on another GPU: sampling there
            here, there = self._snapshot_pairs[0][1].device, self._stream.device  # starts after these copies
            if here != there:
                torch.cuda.current_stream(there).wait_stream(torch.cuda.current_stream(here))
        self.version = version

    def close(self) -> None:
        pass
