"""Per-token logprobs and entropy of completions, computed in chunks.

Layout shared by the trainer and the ``pytorch`` engine (so their numbers agree): every row is
``[left padding][prompt][completion][right padding]``; prompts are left-padded to the longest
prompt P, so completion token j of every row sits at position P + j and is predicted by the
hidden state at P + j - 1. Position ids count real tokens only (padding does not shift them), so
the same numbers come from the cheaper layout ``[common prefix][left padding][own suffix]`` that
runs shared prompt tokens once (``prefill_prompts``; trainer and engine both use it).

Logits are never materialised for all [N, T, V] at once: the final hidden states of the trained
positions are projected through the LM head ``chunk`` rows at a time, their logprobs taken in fp32
without an fp32 copy of the logits (``target_logprob``), and (with grad) each chunk is recomputed in
backward (activation checkpointing), so peak memory is O(chunk x V).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def left_pad(prompt_ids: list[list[int]], pad_id: int, device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad prompts: (ids [N, P], attention mask [N, P])."""
    import torch

    p = max(len(x) for x in prompt_ids)
    ids = torch.full((len(prompt_ids), p), pad_id, dtype=torch.long)  # [N, P]
    att = torch.zeros(len(prompt_ids), p, dtype=torch.long)  # [N, P]
    for i, x in enumerate(prompt_ids):
        if x:
            ids[i, p - len(x):] = torch.tensor(x, dtype=torch.long)
            att[i, p - len(x):] = 1
    return ids.to(device), att.to(device)


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding: [N, L]."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def pack_rows(prompt_ids: list[list[int]], completion_ids: torch.Tensor, pad_id: int,
              device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(input ids [N, P+T], attention mask [N, P+T], position ids [N, P+T], P).

    The whole completion block is attended: right padding after a row's end is only seen by
    later padding positions (causal attention), never by real tokens.
    """
    import torch

    ids_p, att_p = left_pad(prompt_ids, pad_id, device)  # [N, P]
    comp = completion_ids.to(device)  # [N, T]
    ids = torch.cat([ids_p, comp], dim=1)  # [N, P+T]
    att = torch.cat([att_p, torch.ones_like(comp)], dim=1)  # [N, P+T]
    return ids, att, positions(att), ids_p.shape[1]


def cache_argument(model: Any) -> str:
    """The KV-cache keyword of this model's (or decoder's) forward: ``cache`` (transformers >= 5.2x) or
    ``past_key_values``."""
    import inspect

    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: the module's own signature
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def causal_lm_parts(model: Any) -> tuple[Any, Any]:
    """(decoder that returns hidden states, LM head) of a (possibly peft-wrapped) causal LM."""
    lm = model
    if hasattr(lm, "get_base_model"):  # peft.PeftModel: LoRA layers stay active inside
        lm = lm.get_base_model()
    return getattr(lm, lm.base_model_prefix), lm.get_output_embeddings()


def _chunk_stats(hidden: torch.Tensor, targets: torch.Tensor, head: Any, inv_temp: float,
                 with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from retrain.backends.target_logprob import target_logprob

    lp, ent = target_logprob(head(hidden), targets, inv_temp, with_entropy)  # [C], [C] or None
    return lp, ent if ent is not None else lp.new_zeros(())


def token_stats(hidden: torch.Tensor, targets: torch.Tensor, head: Any, temperature: float, chunk: int,
                with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logprob (and Shannon entropy) of ``targets [M]`` from ``hidden [M, H]`` at ``temperature``."""
    import torch
    from torch.utils.checkpoint import checkpoint

    inv_temp = 1.0 / temperature
    lps, ents = [], []
    chunk = max(1, chunk)
    for s in range(0, hidden.shape[0], chunk):
        h, y = hidden[s:s + chunk], targets[s:s + chunk]  # [C, H], [C]
        if torch.is_grad_enabled() and h.requires_grad:
            lp, ent = checkpoint(_chunk_stats, h, y, head, inv_temp, with_entropy, use_reentrant=False)
        else:
            lp, ent = _chunk_stats(h, y, head, inv_temp, with_entropy)
        lps.append(lp)
        ents.append(ent)
    lp_all = torch.cat(lps) if lps else hidden.new_zeros(0, dtype=torch.float32)  # [M]
    ent_all = (torch.cat(ents) if ents else lp_all.new_zeros(0)) if with_entropy else None  # [M]
    return lp_all, ent_all


def completion_logprobs(model: Any, prompt_ids: list[list[int]], completion_ids: torch.Tensor,
                        mask: torch.Tensor, *, pad_id: int, temperature: float, chunk: int,
                        with_entropy: bool = False, common_prefix: bool = True,
                        prefix: SharedPrefix | None = None,
                        decoder: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token logprobs [N, T] (and entropy [N, T]) of the completion tokens where mask is 1
    (0 elsewhere), from one forward of ``model``. ``common_prefix=False``: no separate forward of
    the prompts' common prefix (FSDP2 runs, whose layers reshard between forwards). ``prefix``: the
    step's common prefix, already run (micro-batches share it: ``SharedPrefix``). ``decoder``: a
    callable that stands for ``model``'s decoder with the same parameters (the compiled one:
    ``retrain.backends.compiled``)."""
    import torch

    device = next(model.parameters()).device
    plain_decoder, head = causal_lm_parts(model)
    decoder = decoder if decoder is not None else plain_decoder
    n, t = completion_ids.shape
    unique = list(dict.fromkeys(tuple(x) for x in prompt_ids))
    shared = prefix is not None or len(unique) < n or (common_prefix and common_prefix_len([list(x) for x in unique]) > 0)
    if shared and t > 0 and not getattr(plain_decoder, "gradient_checkpointing", False):
        hidden = _shared_prefix_hidden(decoder, unique, prompt_ids, completion_ids, pad_id, device,
                                       common_prefix, prefix)  # [N, T, H]
        targets = completion_ids.to(device)  # [N, T]
    else:
        ids, att, pos, p = pack_rows(prompt_ids, completion_ids, pad_id, device)  # [N, P+T] x3
        hidden = decoder(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=False).last_hidden_state
        hidden = hidden[:, p - 1:p - 1 + t]  # [N, T, H]: state before each completion token
        targets = ids[:, p:]  # [N, T]
    sel = mask.to(device).reshape(-1) > 0  # [N*T]
    h_sel = hidden.reshape(n * t, -1)[sel]  # [M, H]
    y_sel = targets.reshape(-1)[sel]  # [M]
    lp_sel, ent_sel = token_stats(h_sel, y_sel, head, temperature, chunk, with_entropy)  # [M]
    lp = torch.zeros(n * t, dtype=torch.float32, device=device)  # [N*T]
    lp = lp.masked_scatter(sel, lp_sel).view(n, t)  # [N, T]
    ent = None
    if ent_sel is not None:
        ent = torch.zeros(n * t, dtype=torch.float32, device=device).masked_scatter(sel, ent_sel).view(n, t)
    return lp, ent


def common_prefix_len(prompts: list[list[int]]) -> int:
    """Tokens every prompt starts with, leaving each at least one token of its own (its last hidden state)."""
    first, shortest = prompts[0], min(len(x) for x in prompts)
    n = 0
    while n < shortest - 1 and all(x[n] == first[n] for x in prompts):
        n += 1
    return n


def prefill_prompts(forward: Any, prompts: list[list[int]], pad_id: int, device: Any, cache_kw: str,
                    common_prefix: bool = True, prefix: SharedPrefix | None = None,
                    **kw: Any) -> tuple[Any, Any, torch.Tensor]:
    """Run U prompts into a fresh KV cache, their common prefix once: (output, cache, attention mask [U, C+S]).

    Layout: ``[common prefix (C)][left padding][own suffix]`` with position ids counting real
    tokens, so each row's numbers are those of its plain prompt. A few-shot prompt is mostly
    the shared prefix (system turn and worked examples), so the prefill costs C + U*S token
    forwards instead of U*(C+S). ``output`` is ``forward``'s on the suffixes ([U, S, ...]); the
    last suffix slot of every row is its real last prompt token.
    """
    import torch
    from transformers import DynamicCache

    u, c = len(prompts), common_prefix_len(prompts) if common_prefix else 0
    cache = DynamicCache()
    if prefix is not None:  # run once for the whole step (micro-batches): its K/V as leaves
        c = len(prefix.ids)
        if any(x[:c] != prefix.ids or len(x) <= c for x in prompts):
            raise RuntimeError("shared prefix: a prompt does not start with the step's common prefix")
        cache = prefix.cache()
        cache.batch_repeat_interleave(u)  # [1, kvH, C, D] -> [U, kvH, C, D]
    elif c:
        prefix = torch.tensor([prompts[0][:c]], dtype=torch.long, device=device)  # [1, C]
        forward(input_ids=prefix, position_ids=torch.arange(c, device=device)[None], use_cache=True,
                **{cache_kw: cache}, **kw)
        cache.batch_repeat_interleave(u)  # every layer's K/V: [1, kvH, C, D] -> [U, kvH, C, D]
    ids_s, att_s = left_pad([x[c:] for x in prompts], pad_id, device)  # [U, S]
    att = torch.cat([torch.ones(u, c, dtype=att_s.dtype, device=device), att_s], dim=1)  # [U, C+S]
    out = forward(input_ids=ids_s, attention_mask=att, position_ids=c + positions(att_s), use_cache=True,
                  **{cache_kw: cache}, **kw)
    return out, cache, att


def _shared_prefix_hidden(decoder: Any, unique: list[tuple[int, ...]], prompt_ids: list[list[int]],
                          completion_ids: torch.Tensor, pad_id: int, device: Any,
                          common_prefix: bool = True, prefix: SharedPrefix | None = None) -> torch.Tensor:
    """Hidden states [N, T, H] before each completion token, with each distinct prompt run once.

    The G rows of a group share their prompt: the U distinct prompts go through the decoder once
    (keeping the KV cache, with grad; their common prefix, e.g. few-shot examples, once for all:
    ``prefill_prompts``), the cache is gathered to the N rows, and only the completion tokens run
    per row. Same numbers and gradients as one forward over [N, P+T] (the prompt's keys/values
    get the summed gradient of their users) at about C + U*S + N*T instead of N*(P+T)
    token-forwards: on a CPU, where GRPO steps are compute-bound, the prompt is most of the work.
    """
    import torch

    index = {x: i for i, x in enumerate(unique)}
    rows = torch.tensor([index[tuple(x)] for x in prompt_ids], dtype=torch.long, device=device)  # [N]
    cache_kw = cache_argument(decoder)
    out, cache, att_p = prefill_prompts(decoder, [list(x) for x in unique], pad_id, device, cache_kw,
                                        common_prefix, prefix)
    prompt_h = out.last_hidden_state  # [U, S, H]
    cache.batch_select_indices(rows)  # every layer's K/V: [U, kvH, C+S, D] -> [N, kvH, C+S, D]
    comp = completion_ids.to(device)  # [N, T]
    att = torch.cat([att_p[rows], torch.ones_like(comp)], dim=1)  # [N, C+S+T]
    pos = att_p.sum(1)[rows, None] + torch.arange(comp.shape[1], device=device)  # [N, T]
    comp_h = decoder(input_ids=comp, attention_mask=att, position_ids=pos, use_cache=True,
                     **{cache_kw: cache}).last_hidden_state  # [N, T, H]
    return torch.cat([prompt_h[rows, -1:], comp_h[:, :-1]], dim=1)  # [N, T, H]


class SharedPrefix:
    """The prompts' common prefix (system turn, worked examples) run once per optimizer step and
    shared by its micro-batches.

    Each micro-batch's cache starts from the prefix's K/V as detached leaves; their gradients add
    up over the micro-batches, and ``backward()`` sends the sum through the one prefix forward:
    the gradients of a whole-batch forward, with the memory of one micro-batch and without
    running the prefix once per micro-batch.
    """

    def __init__(self, decoder: Any, prefix: list[int], device: Any) -> None:
        import torch
        from transformers import DynamicCache

        self.ids = list(prefix)
        cache = DynamicCache()
        decoder(input_ids=torch.tensor([self.ids], dtype=torch.long, device=device),
                position_ids=torch.arange(len(self.ids), device=device)[None], use_cache=True,
                **{cache_argument(decoder): cache})
        self.kv = [(layer.keys, layer.values) for layer in cache.layers]  # each [1, kvH, C, D], in the graph
        self.leaves = [(k.detach().requires_grad_(k.requires_grad), v.detach().requires_grad_(v.requires_grad))
                       for k, v in self.kv]

    @classmethod
    def of(cls, model: Any, prompt_ids: list[list[int]], decoder: Any = None) -> SharedPrefix | None:
        """The common prefix of ``prompt_ids`` run through ``model``'s decoder (or ``decoder``, the
        same one compiled), or None when there is none (or the decoder recomputes activations:
        gradient checkpointing)."""
        plain_decoder, _ = causal_lm_parts(model)
        unique = [list(x) for x in dict.fromkeys(tuple(x) for x in prompt_ids)]
        c = common_prefix_len(unique)
        if c == 0 or getattr(plain_decoder, "gradient_checkpointing", False):
            return None
        return cls(decoder if decoder is not None else plain_decoder, unique[0][:c], next(model.parameters()).device)

    def cache(self) -> Any:
        """A fresh DynamicCache holding the prefix K/V leaves (one per micro-batch)."""
        from transformers import DynamicCache

        cache = DynamicCache()
        for i, (k, v) in enumerate(self.leaves):
            cache.update(k, v, i)
        return cache

    def backward(self) -> None:
        """Backpropagate the micro-batches' summed K/V gradients through the prefix forward."""
        import torch

        outs, grads = [], []
        for (k, v), (leaf_k, leaf_v) in zip(self.kv, self.leaves, strict=True):
            for out, leaf in ((k, leaf_k), (v, leaf_v)):
                if leaf.grad is not None:
                    outs.append(out)
                    grads.append(leaf.grad)
        if outs:
            torch.autograd.backward(outs, grads)
