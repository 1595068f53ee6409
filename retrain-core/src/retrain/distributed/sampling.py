"""Sampling whose random numbers belong to a row, not to a batch: the same tokens on 1 or W ranks.

A ``torch.Generator`` hands out random numbers in batch order, so row i's draw depends on how
many rows came before it in the same call: splitting a step's prompts over ranks would change
every sample. Here the uniform number for (seed, global row, token step, vocab entry) is a pure
hash of those four integers (a 32-bit integer mixer, computed with int64 tensor ops that never
overflow), and a token is drawn with the exponential race ``argmax_v p_v / E_v``, ``E = -log U``,
which samples exactly from ``p``. A rank that samples rows 64..127 of a step gets bit-for-bit the
tokens a single process gets for those rows (given the same logits).

The ``pytorch`` engine uses this on its plain path when ``SamplingParams.row_offset`` is set
(distributed runs set it); the CUDA fast path keeps its own graph-safe sampler (see docs/distributed.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MASK32 = 0xFFFFFFFF


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche mixer on int64 tensors (every product stays below 2**63)."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & MASK32
    return x ^ (x >> 16)


def keyed_uniform(seed: int, rows: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """Uniforms in (0, 1) of shape [N, V], a pure function of (seed, rows [N], step, vocab index)."""
    import torch

    dev = rows.device
    s = mix32(torch.tensor([seed & MASK32], device=dev) ^ mix32(torch.tensor([(seed >> 32) & MASK32], device=dev)))
    k = mix32(s ^ mix32(rows.long() * 0x27D4EB2D + 0x165667B1))  # [N]
    k = mix32(k ^ mix32(torch.tensor([step * 0x61C88647 + 0x2545F491], device=dev)))  # [N]
    v = torch.arange(vocab, device=dev, dtype=torch.long) * 0x9E3779B9  # [V]
    u = mix32(mix32(k.unsqueeze(1) + v.unsqueeze(0)))  # [N, V]
    return (u.double() + 0.5) / 4294967296.0  # [N, V]


def keyed_sample(logits: torch.Tensor, temperature: float, top_p: float, seed: int, rows: torch.Tensor,
                 step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sampling step on logits [N, V] for global rows ``rows [N]``: (token [N], logprob [N], entropy [N]).

    Logprob and entropy are those of the full distribution at ``temperature`` (as the trainer
    computes them); ``top_p`` only restricts which tokens can be drawn.
    """
    import torch

    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # [N, V]
    probs = logp.exp()  # [N, V]
    entropy = -(probs * logp).sum(-1)  # [N]
    weights = probs.double()  # [N, V]
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)  # [N, V]
        keep_sorted = (sorted_p.cumsum(-1) - sorted_p) < top_p  # [N, V]; the top token is always kept
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)  # [N, V] in vocab order
        weights = weights * keep
    race = weights / -torch.log(keyed_uniform(seed, rows, step, logits.shape[-1]))  # [N, V]
    token = race.argmax(-1)  # [N]
    lp = logp.gather(-1, token.unsqueeze(-1)).squeeze(-1)  # [N]
    return token, lp, entropy
