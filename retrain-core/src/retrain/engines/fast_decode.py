"""Fast sampling for Llama-style decoders: merged LoRA, a static KV cache, CUDA graphs of the decode step.

The ``pytorch`` engine calls this on CUDA (see :func:`supports`); the plain transformers path
stays the reference, and CPU tests check that both give the same logprobs.

Why it is fast: a decode step of a small model is hundreds of tiny kernels, so eager PyTorch
(and transformers' ``generate``) is bound by launch latency and Python, not by the GPU. Here a
step is written once against static buffers (weights, KV cache ``[layers, N, kv_heads, S, D]``,
output tokens ``[N, T]``) and captured in CUDA graphs; a call replays them T - 1 times with no host
synchronisation. A step attends to the cache's first P + 64 j slots only, the fewest that hold every
token so far (one graph per width j): attention then reads about half the cache on average, not all
of it at every step. LoRA is merged into a private copy of the weights at each ``sync`` (W + s B A,
computed in fp32), q/k/v and gate/up are fused into single matmuls, and the B prompts are
prefilled once, then their cache is copied to the G samples of each group.

Layout: every row is ``[left padding][prompt][completion]``; prompts are left-padded to P
(rounded up to a multiple of 64 so that few graphs are needed), completion token k sits in cache
slot P + k, position ids count real tokens only (as in ``retrain.backends.logprobs``).

Sampling: logprobs and entropy are those of the full distribution at the sampling temperature
(what the trainer computes); ``top_p`` and ``min_tokens`` only restrict which token is drawn.
Tokens are drawn with the exponential-race trick (argmax p / E, E ~ Exp(1)), which is exact and
needs no host synchronisation.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrain.engines.fast_weights import base_lm, cat_bias, linear_weight, supports

if TYPE_CHECKING:
    import torch

PAD_MULTIPLE = 64


@dataclass
class DecodeResult:
    """N rows of sampled completions (token ids include the stop token when one was sampled)."""

    tokens: list[list[int]]
    logprobs: list[list[float]]
    entropy: list[list[float]] | None
    finish_reasons: list[str]  # "stop" | "length"


class _Session:
    """Static buffers (and the captured graphs) for one (rows, cache length, sampling mode)."""

    def __init__(self, dec: FastDecoder, n: int, p: int, t: int) -> None:
        import torch

        self.n, self.p, self.t, self.s = n, p, t, p + t
        kw = dict(device=dec.device)
        shape = (dec.layers, n, dec.kv_heads, self.s, dec.head_dim)
        self.k = torch.zeros(shape, dtype=dec.dtype, **kw)  # [L, N, kvH, S, D]
        self.v = torch.zeros(shape, dtype=dec.dtype, **kw)  # [L, N, kvH, S, D]
        self.tokens = torch.zeros(n, t, dtype=torch.long, **kw)  # [N, T]
        self.logprobs = torch.zeros(n, t, dtype=torch.float32, **kw)  # [N, T]
        self.entropy = torch.zeros(n, t, dtype=torch.float32, **kw)  # [N, T]
        self.plen = torch.zeros(n, dtype=torch.long, **kw)  # [N] real prompt length
        self.start = torch.zeros(n, dtype=torch.long, **kw)  # [N] first real slot
        self.step = torch.zeros(1, dtype=torch.long, **kw)  # index of the last sampled token
        self.inv_temp = torch.ones(1, dtype=torch.float32, **kw)
        self.top_p = torch.ones(1, dtype=torch.float32, **kw)
        self.min_tokens = torch.zeros(1, dtype=torch.long, **kw)
        self.slots = torch.arange(self.s, **kw)  # [S]
        self.graphs: dict[int, Any] = {}  # attended slots -> the captured decode step
        self.stop_ids: tuple[int, ...] | None = None
        self.stop_mask: Any = None  # the stop-token mask the captured graphs read
        self.mode: tuple[bool, bool, bool] | None = None  # (greedy, top_p, entropy) the graphs were captured for

    def width(self, k: int) -> int:
        """Slots decode step k (feeding the token in slot P + k - 1) attends: P + a multiple of 64, capped at S."""
        return min(self.s, self.p + PAD_MULTIPLE * ((k - 1) // PAD_MULTIPLE + 1))


class FastDecoder:
    """Batched sampling from a (peft-wrapped) Llama/Qwen2/Qwen3/Mistral causal LM; see the module doc."""

    def __init__(self, model: Any, use_graphs: bool | None = None, max_sessions: int = 2,
                 compile: bool | None = None) -> None:
        reason = supports(model)
        if reason is not None:
            raise ValueError(f"FastDecoder cannot run this model: {reason}")
        lm = base_lm(model)
        cfg = lm.config
        param = next(lm.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.layers = cfg.num_hidden_layers
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.eps = cfg.rms_norm_eps
        self.use_graphs = (self.device.type == "cuda") if use_graphs is None else use_graphs
        self.max_sessions = max_sessions
        self.sessions: dict[tuple[int, int, int], _Session] = {}
        self.w: dict[str, Any] | None = None
        self._gen: Any = None  # CPU: a seeded generator; CUDA: the default generator (graph-safe)
        if compile is None:  # fusing the elementwise kernels pays where launches dominate: CUDA decode
            compile = self.use_graphs and os.environ.get("RETRAIN_FAST_DECODE_COMPILE", "1") != "0"
        self._compiled: tuple[Any, Any, Any] | None = None
        if compile:
            import torch

            self._compiled = (torch.compile(self._attn_in, dynamic=True, fullgraph=True),
                              torch.compile(self._attn_out_mlp, dynamic=True, fullgraph=True),
                              torch.compile(self._draw, dynamic=True, fullgraph=True))
        self.sync(model)

    # -- weights --------------------------------------------------------------------------------
    def sync(self, model: Any) -> None:
        """Copy the current weights (LoRA merged) into the private, graph-stable buffers."""
        import torch

        lm = base_lm(model)
        decoder = getattr(lm, lm.base_model_prefix)
        rotary = decoder.rotary_emb
        fresh: dict[str, Any] = {
            "embed": decoder.embed_tokens.weight.detach(),
            "norm": decoder.norm.weight.detach(),
            "head": linear_weight(lm.get_output_embeddings())[0],
            "inv_freq": rotary.inv_freq.detach().float(),
            "rope_scale": float(getattr(rotary, "attention_scaling", 1.0)),
            "layers": [],
        }
        for layer in decoder.layers:
            att, mlp = layer.self_attn, layer.mlp
            (wq, bq), (wk, bk), (wv, bv) = (linear_weight(m) for m in (att.q_proj, att.k_proj, att.v_proj))
            wg, _ = linear_weight(mlp.gate_proj)
            wu, _ = linear_weight(mlp.up_proj)
            fresh["layers"].append({
                "ln1": layer.input_layernorm.weight.detach(),
                "ln2": layer.post_attention_layernorm.weight.detach(),
                "wqkv": torch.cat([wq, wk, wv]),  # [(H + 2 kvH) D, hidden]
                "bqkv": cat_bias([bq, bk, bv], [wq.shape[0], wk.shape[0], wv.shape[0]], wq),
                "q_norm": att.q_norm.weight.detach() if hasattr(att, "q_norm") else None,
                "k_norm": att.k_norm.weight.detach() if hasattr(att, "k_norm") else None,
                "wo": linear_weight(att.o_proj)[0],
                "wgu": torch.cat([wg, wu]),  # [2 I, hidden]
                "wd": linear_weight(mlp.down_proj)[0],
            })
        if self.w is None:
            # private copies so that captured graphs keep valid pointers and training never sees them
            self.w = _map(fresh, lambda x: x.clone())
        else:
            _copy_into(self.w, fresh)

    # -- model math (one code path for prefill and decode) ----------------------------------------
    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        import torch

        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * xf.to(x.dtype)

    def _rope(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        w = self.w
        assert w is not None
        freqs = pos[..., None].float() * w["inv_freq"]  # [N, L, D/2]
        emb = torch.cat([freqs, freqs], dim=-1)  # [N, L, D]
        return ((emb.cos() * w["rope_scale"]).to(self.dtype)[:, None],  # [N, 1, L, D]
                (emb.sin() * w["rope_scale"]).to(self.dtype)[:, None])

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        import torch

        half = x.shape[-1] // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    def _attn_in(self, x: torch.Tensor, ln1: torch.Tensor, wqkv: torch.Tensor, bqkv: torch.Tensor | None,
                 q_norm: torch.Tensor | None, k_norm: torch.Tensor | None, cos: torch.Tensor,
                 sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Norm, fused q/k/v projection, RoPE: q [N, H, L, D], k and v [N, kvH, L, D]. Pure (compilable)."""
        import torch.nn.functional as F

        n, length = x.shape[0], x.shape[1]
        h_, kv, d = self.heads, self.kv_heads, self.head_dim
        qkv = F.linear(self._rms(x, ln1), wqkv, bqkv)  # [N, L, (H + 2 kvH) D]
        q, k, v = qkv.split([h_ * d, kv * d, kv * d], dim=-1)
        q = q.view(n, length, h_, d)
        k = k.view(n, length, kv, d)
        if q_norm is not None:
            q, k = self._rms(q, q_norm), self._rms(k, k_norm)  # type: ignore[arg-type]
        q = self._rotate(q.transpose(1, 2), cos, sin)  # [N, H, L, D]
        k = self._rotate(k.transpose(1, 2), cos, sin)  # [N, kvH, L, D]
        return q, k, v.view(n, length, kv, d).transpose(1, 2)

    def _attn_out_mlp(self, x: torch.Tensor, o: torch.Tensor, wo: torch.Tensor, ln2: torch.Tensor,
                      wgu: torch.Tensor, wd: torch.Tensor) -> torch.Tensor:
        """Output projection + residual, norm, SwiGLU MLP + residual: [N, L, hidden]. Pure (compilable)."""
        import torch.nn.functional as F

        x = x + F.linear(o, wo)
        gate, up = F.linear(self._rms(x, ln2), wgu).chunk(2, dim=-1)  # [N, L, I] x2
        return x + F.linear(F.silu(gate) * up, wd)

    def _forward(self, ids: torch.Tensor, pos: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor,
                 write: torch.Tensor, mask: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """Hidden state after the final norm for ``ids [N, L]`` at positions ``pos [N, L]``.

        Writes K/V into ``kc``/``vc [layers, N, kvH, S, D]`` at slots ``write [L]`` and attends
        over the first W slots under ``mask [N, 1, L, W]`` (True = may attend). ``fused``: use the
        torch.compile'd layer parts (decode steps on CUDA).
        """
        import torch
        import torch.nn.functional as F

        w = self.w
        assert w is not None
        n, length = ids.shape
        h_, kv, d = self.heads, self.kv_heads, self.head_dim
        rep, width = h_ // kv, mask.shape[-1]
        attn_in, attn_out = (self._compiled[:2] if fused and self._compiled else (self._attn_in, self._attn_out_mlp))
        cos, sin = self._rope(pos)  # [N, 1, L, D]
        # grouped-query attention without repeating K/V: the rep query heads of one KV head
        # become rep * L query rows against that head
        gmask = mask[:, :, None].expand(n, 1, rep, length, width).reshape(n, 1, rep * length, width)
        # additive, once: SDPA would turn a boolean mask into this in every layer (three kernels each)
        gmask = torch.zeros(gmask.shape, dtype=self.dtype, device=gmask.device).masked_fill_(~gmask, float("-inf"))
        x = F.embedding(ids, w["embed"])  # [N, L, hidden]
        for i, lw in enumerate(w["layers"]):
            q, k, v = attn_in(x, lw["ln1"], lw["wqkv"], lw["bqkv"], lw["q_norm"], lw["k_norm"], cos, sin)
            kc[i].index_copy_(2, write, k)
            vc[i].index_copy_(2, write, v)
            qg = q.reshape(n, kv, rep * length, d)  # [N, kvH, rep*L, D]
            o = F.scaled_dot_product_attention(qg, kc[i, :, :, :width], vc[i, :, :, :width], attn_mask=gmask,
                                               scale=d ** -0.5)
            o = o.reshape(n, h_, length, d).transpose(1, 2).reshape(n, length, h_ * d)  # [N, L, H*D]
            x = attn_out(x, o, lw["wo"], lw["ln2"], lw["wgu"], lw["wd"])
        return self._rms(x, w["norm"])  # [N, L, hidden]

    @staticmethod
    def _draw(logits: torch.Tensor, race: torch.Tensor | None, ban: torch.Tensor, inv_temp: torch.Tensor,
              top_p: torch.Tensor, use_top_p: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token [N], its logprob [N], entropy [N]) from ``logits [N, V]`` at ``1 / inv_temp``; ``race [N, V]``:
        Exp(1) draws (None: greedy); ``ban [V]``: tokens not to draw. Pure (compiled on CUDA: a few fused
        reductions over V instead of a dozen passes over an fp32 [N, V] tensor)."""
        z = logits.float() * inv_temp  # [N, V]
        top = z.amax(-1, keepdim=True)  # [N, 1]
        e = (z - top).exp()  # [N, V]
        total = e.sum(-1)  # [N]
        lse = top[:, 0] + total.log()  # [N]
        entropy = lse - (e * z).sum(-1) / total  # [N]: H = lse - E_p[z]
        score = z.masked_fill(ban, float("-inf"))  # [N, V]
        if use_top_p:
            sorted_z, order = score.sort(dim=-1, descending=True)  # [N, V]
            p_sorted = (sorted_z - lse[:, None]).exp()
            before = p_sorted.cumsum(-1) - p_sorted  # mass strictly before each token
            drop = (before > top_p).scatter(-1, order, before > top_p)  # [N, V] back in vocab order
            score = score.masked_fill(drop, float("-inf"))
        if race is not None:
            score = score - race.clamp(min=1e-30).log()  # argmax p / E: an exact draw
        tok = score.argmax(-1)  # [N]
        return tok, z.gather(-1, tok[:, None])[:, 0] - lse, entropy

    def _sample_into(self, s: _Session, hidden: torch.Tensor, col: torch.Tensor, greedy: bool, use_top_p: bool,
                     want_entropy: bool, stop_mask: torch.Tensor, fused: bool = False) -> None:
        """Draw token ``col`` for every row from ``hidden [N, hidden]``; write token, logprob, entropy."""
        import torch
        import torch.nn.functional as F

        w = self.w
        assert w is not None
        logits = F.linear(hidden, w["head"])  # [N, V]
        race = None if greedy else torch.empty(logits.shape, dtype=torch.float32, device=logits.device).exponential_(
            generator=self._gen)  # [N, V]
        draw = self._compiled[2] if fused and self._compiled else self._draw
        tok, lp, ent = draw(logits, race, stop_mask & (col < s.min_tokens), s.inv_temp, s.top_p, use_top_p)
        s.tokens.index_copy_(1, col, tok[:, None])
        s.logprobs.index_copy_(1, col, lp[:, None])
        if want_entropy:
            s.entropy.index_copy_(1, col, ent[:, None])

    def _decode_step(self, s: _Session, mode: tuple[bool, bool, bool], stop_mask: torch.Tensor, width: int) -> None:
        """Feed token ``step`` (slot P + step < ``width``), sample token ``step + 1``; advance ``step``. Graph-safe."""
        col = s.step  # [1]
        tok_in = s.tokens.index_select(1, col)  # [N, 1]
        pos = (s.plen + col)[:, None]  # [N, 1]
        slot = col + s.p  # [1]
        slots = s.slots[:width]  # [W]
        mask = ((slots >= s.start[:, None]) & (slots <= slot))[:, None, None]  # [N, 1, 1, W]
        hidden = self._forward(tok_in, pos, s.k, s.v, slot, mask, fused=True)[:, 0]  # [N, hidden]
        self._sample_into(s, hidden, col + 1, *mode, stop_mask, fused=True)
        s.step.add_(1)

    # -- the public call ------------------------------------------------------------------------
    def generate(self, prompt_ids: list[list[int]], n: int, max_tokens: int, *, temperature: float = 1.0,
                 top_p: float = 1.0, stop_ids: tuple[int, ...] | list[int] = (), min_tokens: int = 0,
                 want_entropy: bool = False, pad_id: int = 0, seed: int = 0) -> DecodeResult:
        """Sample ``n`` completions of up to ``max_tokens`` for each of the B prompts: N = B*n rows, groups contiguous."""
        import torch

        b, t = len(prompt_ids), max_tokens
        rows = b * n
        longest = max(1, max(len(x) for x in prompt_ids))
        p = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE
        greedy = temperature <= 0.0
        mode = (greedy, (not greedy) and top_p < 1.0, want_entropy)
        s = self._session(rows, p, t)
        stop_mask = torch.zeros(self.w["head"].shape[0], dtype=torch.bool, device=self.device)  # [V]
        stop_mask[list(stop_ids)] = True
        with torch.no_grad():
            if self.use_graphs and (not s.graphs or s.mode != mode or s.stop_ids != tuple(stop_ids)):
                self._capture(s, mode, stop_mask, tuple(stop_ids))
            if self.device.type == "cuda":
                torch.cuda.manual_seed(seed)  # graph replays read the default generator's seed and offset
                self._gen = None
            else:
                self._gen = torch.Generator(device=self.device).manual_seed(seed)
            self._prefill(s, prompt_ids, n, temperature, top_p, min_tokens, mode, stop_mask, pad_id)
            check_every = 32 if stop_ids and min_tokens < t else 0
            for k in range(1, t):
                if s.graphs:
                    s.graphs[s.width(k)].replay()
                else:
                    self._decode_step(s, mode, stop_mask, s.width(k))
                if check_every and k % check_every == 0 and bool(self._all_stopped(s, k + 1, stop_mask)):
                    break
            tokens = s.tokens.cpu()
            logprobs = s.logprobs.cpu()
            entropy = s.entropy.cpu() if want_entropy else None
        return _trim(tokens, logprobs, entropy, set(stop_ids), min_tokens)

    def _all_stopped(self, s: _Session, upto: int, stop_mask: torch.Tensor) -> torch.Tensor:
        return stop_mask[s.tokens[:, :upto]].any(-1).all()

    def _session(self, rows: int, p: int, t: int) -> _Session:
        key = (rows, p, t)
        if key not in self.sessions:
            while len(self.sessions) >= self.max_sessions:  # free the oldest buffers and graphs
                self.sessions.pop(next(iter(self.sessions)))
            self.sessions[key] = _Session(self, rows, p, t)
        else:
            self.sessions[key] = self.sessions.pop(key)  # most recently used last
        return self.sessions[key]

    def _prefill(self, s: _Session, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float,
                 min_tokens: int, mode: tuple[bool, bool, bool], stop_mask: torch.Tensor, pad_id: int) -> None:
        import torch

        b, p = len(prompt_ids), s.p
        ids = torch.full((b, p), pad_id, dtype=torch.long)  # [B, P]
        lens = torch.tensor([len(x) for x in prompt_ids], dtype=torch.long)  # [B]
        for i, x in enumerate(prompt_ids):
            if x:
                ids[i, p - len(x):] = torch.tensor(x, dtype=torch.long)
        ids, lens = ids.to(self.device), lens.to(self.device)
        start = p - lens  # [B]
        pos = (torch.arange(p, device=self.device)[None] - start[:, None]).clamp(min=0)  # [B, P]
        q_slot = torch.arange(p, device=self.device)  # [P]
        # causal and not padding; a padding query attends to itself only (its output is unused)
        mask = ((q_slot[None, None, :] <= q_slot[None, :, None]) & (q_slot[None, None, :] >= start[:, None, None])) \
            | (q_slot[None, None, :] == q_slot[None, :, None])  # [B, P, P]
        kc = torch.empty(self.layers, b, self.kv_heads, p, self.head_dim, dtype=self.dtype, device=self.device)
        vc = torch.empty_like(kc)  # [L, B, kvH, P, D]
        hidden = self._forward(ids, pos, kc, vc, q_slot, mask[:, None])[:, -1]  # [B, hidden]
        s.k[:, :, :, :p].copy_(kc.repeat_interleave(n, dim=1))  # [L, N, kvH, P, D]
        s.v[:, :, :, :p].copy_(vc.repeat_interleave(n, dim=1))
        s.plen.copy_(lens.repeat_interleave(n))
        s.start.copy_(start.repeat_interleave(n))
        s.inv_temp.fill_(1.0 / temperature if temperature > 0 else 1.0)
        s.top_p.fill_(top_p)
        s.min_tokens.fill_(min_tokens)
        s.step.zero_()
        s.tokens.zero_()
        self._sample_into(s, hidden.repeat_interleave(n, dim=0), s.step.clone(), *mode, stop_mask)

    def _capture(self, s: _Session, mode: tuple[bool, bool, bool], stop_mask: torch.Tensor,
                 stop_ids: tuple[int, ...]) -> None:
        """Capture the decode step at each width the call will use (the buffers hold garbage; prefill resets
        them afterwards). The graphs share one memory pool: they never run at the same time."""
        import torch

        s.min_tokens.zero_()
        s.stop_mask = stop_mask  # keep it alive: the graphs read it
        widths = sorted({s.width(k) for k in range(1, s.t)})
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            # warm up (and compile) kernels and the allocator outside graphs, each width once, the widest first
            for width in widths[-1:] + widths[:-1]:
                s.step.zero_()
                try:
                    self._decode_step(s, mode, stop_mask, width)
                except Exception as e:  # a compiler problem must not stop sampling: run unfused
                    if self._compiled is None:
                        raise
                    warnings.warn(f"fast decode: torch.compile failed ({type(e).__name__}: {e}); "
                                  f"continuing without fused kernels", stacklevel=2)
                    self._compiled = None
                    s.step.zero_()
                    self._decode_step(s, mode, stop_mask, width)
        torch.cuda.current_stream().wait_stream(stream)
        graphs: dict[int, Any] = {}
        pool = None
        for width in widths:
            s.step.zero_()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._decode_step(s, mode, stop_mask, width)
            graphs[width], pool = graph, graph.pool()
        s.graphs, s.mode, s.stop_ids = graphs, mode, stop_ids


def _trim(tokens: torch.Tensor, logprobs: torch.Tensor, entropy: torch.Tensor | None, stop: set[int],
          min_tokens: int) -> DecodeResult:
    """Cut each row after its first stop token (kept) at or after ``min_tokens``."""
    out_t, out_lp, out_e, reasons = [], [], [] if entropy is not None else None, []
    for i, row in enumerate(tokens.tolist()):
        end, reason = len(row), "length"
        for j in range(min(min_tokens, len(row)), len(row)):
            if row[j] in stop:
                end, reason = j + 1, "stop"
                break
        out_t.append(row[:end])
        out_lp.append(logprobs[i, :end].tolist())
        if out_e is not None:
            out_e.append(entropy[i, :end].tolist())  # type: ignore[index]
        reasons.append(reason)
    return DecodeResult(out_t, out_lp, out_e, reasons)


def _map(tree: Any, fn: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _map(v, fn) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_map(v, fn) for v in tree]
    return fn(tree) if hasattr(tree, "clone") else tree


def _copy_into(dst: Any, src: Any) -> None:
    if isinstance(dst, dict):
        for k in dst:
            if hasattr(dst[k], "copy_"):
                dst[k].copy_(src[k])
            elif isinstance(dst[k], (dict, list)):
                _copy_into(dst[k], src[k])
    elif isinstance(dst, list):
        for a, b in zip(dst, src):
            _copy_into(a, b)


def for_engine(engine: Any, model: Any, version: int) -> FastDecoder | None:
    """The engine's FastDecoder with weights synced to policy ``version``, or None to use the plain path.

    None on CPU, for unsupported architectures, or when ``RETRAIN_FAST_DECODE=0``. The decoder is
    cached on the engine (attribute ``_fast_decoder``) and re-merges LoRA only when the version moves.
    """
    import os

    if os.environ.get("RETRAIN_FAST_DECODE", "1") == "0":
        return None
    if next(model.parameters()).device.type != "cuda" and os.environ.get("RETRAIN_FAST_DECODE") != "1":
        return None
    if supports(model) is not None:
        return None
    dec = getattr(engine, "_fast_decoder", None)
    if dec is None:
        dec = engine._fast_decoder = FastDecoder(model)
        engine._fast_decoder_version = version
    elif getattr(engine, "_fast_decoder_version", None) != version:
        dec.sync(model)
        engine._fast_decoder_version = version
    return dec


def generate_fast(engine: Any, model: Any, prompt_ids: list[list[int]], params: Any, stop_ids: set[int],
                  pad_id: int) -> DecodeResult | None:
    """The ``pytorch`` engine's hook: B prompts x ``params.n`` through the fast path, or None (plain path)."""
    dec = for_engine(engine, model, engine.version)
    if dec is None:
        return None
    return dec.generate(prompt_ids, params.n, params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                        stop_ids=sorted(stop_ids), min_tokens=getattr(params, "min_tokens", 0), want_entropy=True,
                        pad_id=pad_id, seed=params.seed)
