"""Data that crosses component boundaries (docs/architecture.md, the data path).

Shapes: B prompts, G samples per prompt, N = B*G rows, T completion tokens.
Groups are contiguous: rows g*G .. g*G+G-1 belong to prompt g.
torch is imported lazily so that this module stays cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from retrain.config import Config

Messages = list[dict[str, str]]


@dataclass
class Task:
    """One problem: what the model sees and what the reward checks against."""

    prompt: str | Messages  # plain user text, or chat messages
    answer: str  # reference answer ("" when the reward needs none)
    id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class SamplingParams:
    n: int  # G completions per prompt
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    want_entropy: bool = False  # ask for per-token entropy when the engine can give it
    min_tokens: int = 0  # no stop token before this many (benchmarks force fixed lengths)
    row_offset: int | None = None  # distributed runs: global index of the first prompt (row-keyed sampling)


@dataclass
class Generation:
    """What an engine returns for B prompts x n samples: N rows, token-in / token-out.

    Lists (not tensors) so HTTP engines need no torch; ``Rollouts.from_generation`` pads them.
    """

    completion_ids: list[list[int]]  # N
    logprobs: list[list[float]]  # N, sampling logprobs at the sampling temperature
    finish_reasons: list[str]  # N: "stop" | "length"
    texts: list[str]  # N
    policy_version: int
    entropy: list[list[float]] | None = None  # N, Shannon entropy of the sampling distribution
    loss_mask: list[list[int]] | None = None  # N, 0 on tokens the model did not generate (multi-turn)

    @classmethod
    def concat(cls, parts: list[Generation], what: str = "chunks") -> Generation:
        """The rows of several generations in order (chunks of one request, or ranks); an optional field
        is kept only when every part has it. Parts sampled from different policy versions are an error
        (``what`` names them in it): one batch must come from one policy."""
        versions = sorted({g.policy_version for g in parts})
        if len(versions) != 1:
            raise RuntimeError(f"{what} sampled from different policy versions {versions}")
        if len(parts) == 1:
            return parts[0]

        def cat(name: str) -> Any:
            values = [getattr(g, name) for g in parts]
            return None if any(v is None for v in values) else [x for v in values for x in v]

        return cls(completion_ids=cat("completion_ids"), logprobs=cat("logprobs"), finish_reasons=cat("finish_reasons"),
                   texts=cat("texts"), policy_version=parts[0].policy_version, entropy=cat("entropy"),
                   loss_mask=cat("loss_mask"))


@dataclass
class Rollouts:
    """One step's samples, padded to tensors (right padding, mask 0 on padding)."""

    tasks: list[Task]  # B
    group_size: int  # G
    prompt_ids: list[list[int]]  # N, unpadded
    completion_ids: torch.Tensor  # [N, T] long
    mask: torch.Tensor  # [N, T] float, 1 on trained completion tokens
    logprobs: torch.Tensor  # [N, T] float, sampling logprobs
    entropy: torch.Tensor | None  # [N, T] float or None
    finish_reasons: list[str]  # N
    texts: list[str]  # N
    policy_version: int

    @property
    def n(self) -> int:
        return len(self.texts)

    @property
    def references(self) -> list[str]:
        """The reference answer of each row: [N]."""
        return [self.tasks[i // self.group_size].answer for i in range(self.n)]

    @classmethod
    def from_generation(
        cls, tasks: list[Task], prompt_ids: list[list[int]], gen: Generation, group_size: int
    ) -> Rollouts:
        import torch

        n = len(gen.completion_ids)
        t = max(1, max((len(c) for c in gen.completion_ids), default=1))
        ids = torch.zeros(n, t, dtype=torch.long)  # [N, T]
        mask = torch.zeros(n, t)  # [N, T]
        lp = torch.zeros(n, t)  # [N, T]
        ent = torch.zeros(n, t) if gen.entropy is not None else None  # [N, T]
        for i, c in enumerate(gen.completion_ids):
            k = len(c)
            ids[i, :k] = torch.tensor(c, dtype=torch.long)
            mask[i, :k] = 1.0 if gen.loss_mask is None else torch.tensor(gen.loss_mask[i], dtype=torch.float)
            lp[i, :k] = torch.tensor(gen.logprobs[i], dtype=torch.float)
            if ent is not None:
                ent[i, :k] = torch.tensor(gen.entropy[i], dtype=torch.float)  # type: ignore[index]
        rows_prompt_ids = [prompt_ids[i // group_size] for i in range(n)] if len(prompt_ids) != n else prompt_ids
        return cls(tasks, group_size, rows_prompt_ids, ids, mask, lp, ent, gen.finish_reasons, gen.texts,
                   gen.policy_version)


@dataclass
class RunContext:
    """What a component may need at run time besides its own options (inject it by declaring
    a ``ctx`` parameter in the factory)."""

    config: Config
    registry: Any  # retrain.plugins.Registry; not imported: the plugin system imports components, which import this module
    config_path: Path | None = None
    run_dir: Path | None = None
    backend: Any = None  # the trainer (owns weights, tokenizer)
    tokenizer: Any = None
    device: str = "cpu"
    extras: dict[str, Any] = field(default_factory=dict)
