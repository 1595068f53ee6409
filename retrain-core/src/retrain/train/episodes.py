"""Who runs a step's episodes: the loop (render each prompt, sample from the engine) or the environment.

Chosen once per run by :func:`episodes_for`, from the environment's optional ``rollout`` member
(``retrain.protocols.Environment``); training and evaluation both generate through it, so the
loop has no per-step branch on the kind of environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from retrain.protocols import Engine, Environment, Rollout, optional

if TYPE_CHECKING:
    from retrain.types import Generation, RunContext, SamplingParams, Task


class Episodes(Protocol):
    def run(self, tasks: list[Task], params: SamplingParams) -> tuple[list[list[int]], Generation]:
        """B tasks -> (prompt ids: B or N rows, generation: N = B * params.n rows, groups contiguous)."""

    def metrics(self) -> dict[str, float]:
        """What the last ``run`` adds to the step's metrics."""


class PromptEpisodes:
    """Single-turn episodes: render each task's prompt and sample ``params.n`` completions from the engine."""

    def __init__(self, ctx: RunContext, engine: Engine) -> None:
        self.ctx, self.engine = ctx, engine

    def run(self, tasks: list[Task], params: SamplingParams) -> tuple[list[list[int]], Generation]:
        from retrain.prompts import render_prompts

        prompt_ids = render_prompts(self.ctx.config, self.ctx.tokenizer, tasks)  # B prompts: [data] template, chat template
        return prompt_ids, self.engine.generate(prompt_ids, params)  # N rows

    def metrics(self) -> dict[str, float]:
        return dict(optional(self.engine, Engine, "step_metrics")())


class EnvironmentEpisodes:
    """The environment runs its own episodes (multi-turn, tools: retrain-verifiers) and calls the engine itself."""

    def __init__(self, ctx: RunContext, environment: Environment, rollout: Rollout, engine: Engine) -> None:
        self.ctx, self.environment, self.rollout, self.engine = ctx, environment, rollout, engine

    def run(self, tasks: list[Task], params: SamplingParams) -> tuple[list[list[int]], Generation]:
        return self.rollout(self.engine, self.ctx.tokenizer, tasks, params)  # N prompt rows, N rows

    def metrics(self) -> dict[str, float]:
        return {**optional(self.environment, Environment, "rollout_metrics")(),
                **optional(self.engine, Engine, "step_metrics")()}


def episodes_for(ctx: RunContext, environment: Environment, engine: Engine) -> Episodes:
    """The environment's own episodes when it declares ``rollout``, else prompts rendered by the loop."""
    rollout = optional(environment, Environment, "rollout")
    if rollout is not None:
        return EnvironmentEpisodes(ctx, environment, rollout, engine)
    return PromptEpisodes(ctx, engine)
