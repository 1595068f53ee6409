"""``[environment] provider = "verifiers"``: tasks, rewards and rollouts from a verifiers 0.4 environment.

The environment supplies what ``[data]`` and ``[reward]`` supply otherwise: training tasks
(``sample``), held-out tasks (``eval_tasks``), and the reward (``.reward``, the environment's
own ``@vf.reward`` functions / rubric). Because verifiers scores whole episodes (traces), and
a multi-turn environment runs its own loop, the training loop hands generation to the
environment when it has :meth:`VerifiersEnvironment.rollout`: every episode runs inside the
environment with the selected retrain engine as its model, and ``reward.score`` then returns the
rewards of those episodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrain.errors import ConfigError, RetrainError
from retrain.protocols import RewardResult
from retrain.types import Generation, SamplingParams, Task

if TYPE_CHECKING:
    from retrain.types import RunContext

    from retrain_verifiers.rollout import EpisodeRows

ANSWER_FIELDS = ("answer", "target", "solution", "expected", "ground_truth")


class VerifiersEnvironment:
    """Train on a verifiers (0.4.x, verifiers.v1) environment: its tasks, its loop, its rubric."""

    config_section = "environment"

    def __init__(self, provider: str = "verifiers", id: str = "", args: dict | None = None,
                 auto_install: bool = False, max_turns: int = 1, ctx: RunContext | None = None) -> None:
        source = getattr(getattr(ctx, "config", None), "source", "") or "config"
        where = f"{source} [environment] id"
        if not id:
            raise ConfigError(f'{source} [environment] provider = "verifiers" needs an environment id: '
                              'set [environment] id = "name" (an installed verifiers environment package).')
        if max_turns < 1:
            raise ConfigError(f"{source} [environment] max_turns = {max_turns}: must be at least 1.")
        from retrain_verifiers.install import ensure_installed, parse_env_id

        ref = parse_env_id(id, where)
        ensure_installed(ref, auto_install, where)
        from retrain_verifiers.loading import TaskSource

        config = getattr(ctx, "config", None)
        n_eval = int(config.eval.num_problems) if config is not None else 64
        self.seed = int(config.training.seed) if config is not None else 0
        self.id = id
        self.max_turns = max_turns
        try:
            self.source = TaskSource(id, dict(args or {}),
                                     max_turns, n_eval, where)
        except (ModuleNotFoundError, ImportError, TypeError, ValueError, AttributeError) as e:
            if isinstance(e, RetrainError):
                raise
            raise RetrainError(f'{where} = "{id}": verifiers could not load the environment: '
                               f"{type(e).__name__}: {e}") from e
        self.cursor = 0
        self._tasks: dict[str, Any] = {}
        self.last: EpisodeRows | None = None
        self.reward = VerifiersReward(self)

    # -- tasks -----------------------------------------------------------------------------
    def _to_task(self, vf_task: Any, split: str) -> Task:
        from retrain_verifiers.rollout import task_messages
        from retrain_verifiers.tokens import plain_messages

        data = vf_task.data
        answer = next((getattr(data, f) for f in ANSWER_FIELDS if getattr(data, f, None) is not None), "")
        task_id = f"{split}/{data.idx}"
        self._tasks[task_id] = vf_task
        return Task(prompt=plain_messages(task_messages(vf_task)), answer=str(answer), id=task_id,
                    metadata={"environment": self.id, "name": data.name or "", "key": vf_task.key})

    def sample(self, batch_size: int) -> list[Task]:
        """The next ``batch_size`` training tasks (seeded shuffle per epoch; cursor checkpointed)."""
        tasks = [self._to_task(self.source.train_task(self.cursor + i, self.seed), "train")
                 for i in range(batch_size)]
        self.cursor += batch_size
        return tasks

    def eval_tasks(self, n: int) -> list[Task]:
        """The first ``n`` held-out tasks (never trained on)."""
        return [self._to_task(t, "eval") for t in self.source.held_out[:n]]

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor = int(state.get("cursor", 0))

    # -- episodes ----------------------------------------------------------------------------
    def rollout(self, engine: Any, tokenizer: Any, tasks: list[Task],
                params: SamplingParams) -> tuple[list[list[int]], Generation]:
        """Run ``params.n`` episodes of each task in the environment's own loop with ``engine`` as the model.

        Returns per-row prompt ids (N) and a Generation of N rows, groups contiguous; multi-turn
        rows hold every turn with ``loss_mask`` 0 on environment tokens. The episodes' rewards are
        then what ``self.reward.score`` returns.
        """
        from retrain_verifiers.rollout import run_episodes

        try:
            vf_tasks = [self._tasks[t.id] for t in tasks]
        except KeyError as e:
            raise RetrainError(f"retrain-verifiers: task {e} did not come from this environment's "
                               "sample()/eval_tasks().") from None
        self.last = run_episodes(self.source.env, vf_tasks, params.n, engine, tokenizer, params)
        return self.last.prompt_ids, self.last.generation

    def rollout_metrics(self) -> dict[str, float]:
        """Metrics of the latest rollout: turns per episode, failed episodes, engine batches."""
        if self.last is None:
            return {}
        turns = self.last.turns
        return {"env/turns_mean": sum(turns) / max(1, len(turns)), "env/episode_errors": float(self.last.errors),
                "env/engine_calls": float(len(self.last.batch_sizes))}


class VerifiersReward:
    """The environment's rubric: the weighted ``@vf.reward`` values of the episodes ``rollout`` ran."""

    def __init__(self, env: VerifiersEnvironment) -> None:
        self.env = env

    def score(self, responses: list[str], references: list[str]) -> RewardResult:
        last = self.env.last
        if last is None or list(responses) != list(last.generation.texts):
            raise RetrainError("retrain-verifiers: the environment scores its own episodes; generate through "
                               "environment.rollout(engine, tokenizer, tasks, params) before reward.score().")
        return RewardResult(rewards=list(last.rewards), terms={k: list(v) for k, v in last.terms.items()},
                            errors=last.errors)
