"""What each kind of component must provide (structural typing; no base classes needed).

Component modules must not import torch, transformers, peft, vllm or verifiers at module level:
import them inside functions/methods so that ``retrain --help`` and ``retrain plugins list``
stay fast (a test checks that listing plugins imports no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from retrain.types import Generation, Rollouts, SamplingParams, Task


@runtime_checkable
class Backend(Protocol):
    """Owns the policy weights, tokenizer and optimizer."""

    tokenizer: Any
    version: int  # policy version: 0 at start, +1 per optimizer step

    def train_step(self, rollouts: Rollouts, token_advantages: torch.Tensor, *,
                   importance_correction: bool = False) -> dict[str, float]:
        """One optimizer step on ``token_advantages [N, T]``; returns loss/* and grad metrics.

        The loop passes ``importance_correction=True`` when the engine does not share the
        trainer's weights (no ``shares_weights = True``): correct the engine/trainer mismatch
        with a truncated importance weight (see docs/training.md).
        """

    def save_checkpoint(self, path: str) -> None: ...

    def load_checkpoint(self, path: str) -> None: ...


@runtime_checkable
class Engine(Protocol):
    """Samples completions; token ids in, token ids out."""

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation:
        """B prompts -> N = B*n rows, groups contiguous."""

    def sync(self, backend: Backend, version: int) -> None:
        """Make the engine sample from the backend's current weights, tagged ``version``."""

    def close(self) -> None: ...


@runtime_checkable
class Environment(Protocol):
    """A task source. Training and evaluation tasks never overlap."""

    def sample(self, batch_size: int) -> list[Task]:
        """The next ``batch_size`` training tasks (advances a cursor saved in checkpoints)."""

    def eval_tasks(self, n: int) -> list[Task]:
        """``n`` held-out tasks, the same every call."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class RewardResult:
    rewards: list[float]  # [N]
    terms: dict[str, list[float]] = field(default_factory=dict)  # per-term values, each [N]
    errors: int = 0  # scoring calls that raised (scored 0, counted)
    timeouts: int = 0  # scoring calls that ran past the timeout (scored 0, counted)
    unparsed_refs: int = 0  # rows whose reference did not parse as math (compared as text, counted)


@runtime_checkable
class Reward(Protocol):
    def score(self, responses: list[str], references: list[str]) -> RewardResult: ...


@runtime_checkable
class Logger(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...
