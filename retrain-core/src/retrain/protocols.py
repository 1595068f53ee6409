"""What each kind of component must provide (structural typing; no base classes needed).

Required members are methods of the protocols below. Optional members are declared in the
protocol bodies *with a default value*; the core reads them only through :func:`optional`,
which returns the protocol's default when a component leaves the member out. So every member
the core uses is written down here, and a component implements only what it needs.

The loop's own pieces are protocols too: :class:`Credit` (rewards -> token advantages) and
:class:`ShardPlan` (this process's share of a step: the whole batch in one process,
``retrain.distributed.step.StepShards`` under torchrun).

Component modules must not import torch, transformers, peft, vllm or verifiers at module level:
import them inside functions/methods so that ``retrain --help`` and ``retrain plugins list``
stay fast (a test checks that listing plugins imports no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from retrain.types import Generation, Rollouts, SamplingParams, Task

def no_metrics() -> dict[str, float]:
    """The default of the optional ``*_metrics()`` members: nothing to add."""
    return {}


def nothing_to_close() -> None:
    """The default of the optional ``close()`` members."""


#: ``rollout(engine, tokenizer, tasks, params) -> (prompt_ids, generation)``: an environment that
#: runs its own episodes (multi-turn, tools). ``prompt_ids`` has one row per prompt or per sample.
Rollout = Callable[[Any, Any, "list[Task]", "SamplingParams"], "tuple[list[list[int]], Generation]"]


@runtime_checkable
class Backend(Protocol):
    """Owns the policy weights, tokenizer and optimizer."""

    tokenizer: Any
    version: int  # policy version: 0 at start, +1 per optimizer step

    # optional (read through optional(); these are the defaults)
    model: Any = None  # the torch module: back pressure's KV-cache memory cap, FSDP sharding under torchrun
    #: ``close()``: release what the backend holds (a remote service's session, worker processes) at the end
    #: of the run, after the engine, reward and environment are closed.
    close: Callable[[], None] = nothing_to_close

    def train_step(self, rollouts: Rollouts, token_advantages: torch.Tensor, *,
                   importance_correction: bool = False) -> dict[str, float]:
        """One optimizer step on ``token_advantages [N, T]``; returns loss/* and grad metrics.

        The loop passes ``importance_correction=True`` when the engine does not share the
        trainer's weights (no ``shares_weights = True``): correct the engine/trainer mismatch
        with a truncated importance weight (see docs/training.md). A non-finite gradient norm
        must not be applied (skip ``optimizer.step()``); report ``loss/policy`` and
        ``train/grad_norm`` so that ``retrain.train.guards`` can count and bound such steps.
        """

    def save_checkpoint(self, path: str) -> None: ...

    def load_checkpoint(self, path: str) -> None: ...


@runtime_checkable
class Engine(Protocol):
    """Samples completions; token ids in, token ids out."""

    # optional (read through optional(); these are the defaults)
    #: True when the engine samples from the trainer's own weights (same numerics): the loop then
    #: trains without the engine/trainer importance correction.
    shares_weights: bool = False
    #: True while a ``shares_weights`` engine samples from its own copy of the trainer's weights, refreshed by
    #: ``sync`` (``sample_from_snapshot``, ``[inference] device``): the post-sync probe then checks that copy.
    samples_from_copy: bool = False
    #: ``step_metrics()``: the engine's own metrics of the last step (e.g. back pressure's ``backpressure/*``).
    step_metrics: Callable[[], dict[str, float]] = no_metrics
    #: ``sample_from_snapshot()``: from now on sample from a private copy of the policy, refreshed by each
    #: ``sync``, so the trainer may update its weights while the engine samples (``[training] max_staleness``
    #: > 0). Only engines that read the trainer's tensors in-process need it (the pytorch engine).
    sample_from_snapshot: Callable[[], None] | None = None

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation:
        """B prompts -> N = B*n rows, groups contiguous."""

    def sync(self, backend: Backend, version: int) -> None:
        """Make the engine sample from the backend's current weights, tagged ``version``."""

    def close(self) -> None: ...


@runtime_checkable
class Environment(Protocol):
    """A task source. Training and evaluation tasks never overlap."""

    # optional (read through optional(); these are the defaults)
    #: The environment's own reward, used instead of ``[reward] type`` (e.g. verifiers rubrics).
    reward: Reward | None = None
    #: Runs the environment's own episodes instead of "render the prompt, engine.generate" (:data:`Rollout`).
    rollout: Rollout | None = None
    #: ``rollout_metrics()``: metrics of the last ``rollout`` episodes, merged into the step's metrics.
    rollout_metrics: Callable[[], dict[str, float]] = no_metrics
    #: ``close()``: release what the environment holds (servers, worker processes) at the end of the run.
    close: Callable[[], None] = nothing_to_close
    #: ``check_prompts(ctx)``: refuse, in one line, tasks that the run's model cannot take (a prompt longer
    #: than its context). The environment is built before the backend, so that bad data fails before any
    #: model loads; this is called once the backend is built (``ctx.backend``, ``ctx.tokenizer`` set).
    check_prompts: Callable[[Any], None] | None = None
    #: Under ``[environment] provider``, [data] task keys, [data] prompt keys (when it has ``rollout``) and
    #: [reward] keys (when it has ``reward``) are refused as ignored (``retrain.config.check_provider_keys``),
    #: except those listed here as ``"section.key"`` because the environment reads them.
    config_keys: tuple[str, ...] = ()

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
    """Scores completions against reference answers."""

    # optional (read through optional(); these are the defaults)
    #: ``close()``: stop worker processes / HTTP clients at the end of the run.
    close: Callable[[], None] = nothing_to_close

    def score(self, responses: list[str], references: list[str]) -> RewardResult: ...


@runtime_checkable
class Logger(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Credit(Protocol):
    """Rewards -> token advantages (``retrain.advantages.credit.Credit``; stateful, checkpointed)."""

    def compute(self, rewards: torch.Tensor, rollouts: Rollouts, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """``rewards [N]`` -> (token advantages ``[N, T]``, ``adv/*`` metrics)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class ShardPlan(Protocol):
    """This process's share of a step. One process: the whole batch, every method the identity
    (``retrain.train.shards.OneProcess``); torchrun: whole groups per rank, gathered results
    (``retrain.distributed.step.StepShards``)."""

    is_main: bool  # this process evaluates and writes the run directory
    processes: int  # how many processes share the step (1: one process)

    def share(self, tasks: list[Task]) -> list[Task]:
        """This process's prompts (B/W of the B tasks), in global order."""

    def row_offset(self, count: int) -> int | None:
        """Global index of this process's first prompt (None: one process; keys row-invariant sampling)."""

    def gather_generation(self, prompt_ids: list[list[int]], gen: Generation) -> tuple[list[list[int]], Generation]:
        """Every process's prompts and rows, in global order (N rows)."""

    def score(self, reward: Reward, rollouts: Rollouts) -> RewardResult:
        """The RewardResult of all N rows."""

    def rows(self, rollouts: Rollouts, token_adv: torch.Tensor) -> tuple[Rollouts, torch.Tensor]:
        """This process's rows to train on: (rollouts ``[N/W, T]``, token advantages ``[N/W, T]``)."""

    def agree(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any (stop requests, Ctrl-C)."""


def optional(component: Any, protocol: type, member: str) -> Any:
    """``component.<member>``, or the default ``protocol`` declares for it when the component leaves it out.

    >>> class Plain: pass
    >>> optional(Plain(), Engine, "shares_weights")
    False

    A member the protocol does not declare is an error (declare it here first), not a silent None.
    """
    if member not in vars(protocol):
        raise AttributeError(f"{protocol.__name__}.{member} is not an optional member declared in retrain.protocols")
    return getattr(component, member, vars(protocol)[member])
