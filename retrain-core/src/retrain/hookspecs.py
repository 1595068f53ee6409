"""Hook specifications of the ``retrain`` pluggy project.

A plugin is a module (found through the ``retrain`` entry-point group, or registered in-process)
that implements some of these hooks with ``@retrain.hookimpl``. Registration hooks receive a
``register(name, component)`` callback; a component is a plain function (an advantage or a reward,
called with the kind's inputs) or a factory, a class or function whose typed keyword arguments
are its config options (docs/plugins.md, "Two forms"). A factory may also declare a ``ctx``
parameter, which receives the run context and is not an option.

Lifecycle hooks (``retrain_start_run`` ... ``retrain_end_run``) let a plugin follow a run and
extend it without forking the loop. Observing hooks return nothing; ``retrain_after_step``
returns extra metrics (each plugin's dict is merged into the step's metrics) and
``retrain_stop_run`` returns a reason to stop (any reason stops the run after the step). The core
calls them through one facade, :class:`retrain.lifecycle.RunHooks`. They run in every installed
plugin: a plugin decides from its own config section (``ctx.config.section("NAME")``) whether
to act, so installing it changes nothing until the config asks.

Specs evolve by adding: parameters are added, never renamed or removed. The core calls every hook
through pluggy with all of its spec's arguments, and a hookimpl names only those it uses, so an
implementation written against an older spec keeps working (tests/core/test_plugin_forms.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import pluggy

PROJECT = "retrain"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``register(name, factory)``: add one component under ``name``.
Register = Callable[[str, Callable[..., Any]], None]

#: The run context, ``retrain.types.RunContext`` (config, run_dir, backend, tokenizer, registry).
#: Named here, not imported: retrain.types reaches this module through the plugin manager.
RunContext = Any


@hookspec
def retrain_register_backends(register: Register) -> None:
    """Register trainers (kind ``backend``), selected by ``[backend] backend``.

    A backend owns the policy weights, tokenizer and optimizer (``retrain.protocols.Backend``):
    ``train_step(rollouts, token_advantages)`` -> metrics, ``save_checkpoint(path)`` /
    ``load_checkpoint(path)``, and a ``version`` counter (+1 per optimizer step).

    Example::

        @hookimpl
        def retrain_register_backends(register):
            register("local", LocalBackend)

    Since 0.1.0.
    """


@hookspec
def retrain_register_engines(register: Register) -> None:
    """Register inference engines (kind ``engine``), selected by ``[inference] engine``.

    An engine samples completions token-in / token-out (``retrain.protocols.Engine``):
    ``generate(prompt_ids, params)`` -> ``retrain.types.Generation``, ``sync(backend, version)``
    to load new weights, ``close()``.

    Example::

        @hookimpl
        def retrain_register_engines(register):
            register("vllm", VLLMEngine)

    Since 0.1.0.
    """


@hookspec
def retrain_register_rewards(register: Register) -> None:
    """Register reward functions (kind ``reward``), selected by ``[reward] type``.

    A reward scores completions against reference answers (``retrain.protocols.Reward``):
    ``score(responses, references)`` -> ``RewardResult`` (one reward per response, plus
    per-term values and error/timeout counts).

    Example::

        @hookimpl
        def retrain_register_rewards(register):
            register("math", MathReward)

    Since 0.1.0.
    """


@hookspec
def retrain_register_advantages(register: Register) -> None:
    """Register episode-level advantage functions (kind ``advantage``), selected by
    ``[algorithm] advantage_mode``.

    An advantage maps group rewards ``[B, G]`` to episode advantages ``[B, G]``.

    Example::

        @hookimpl
        def retrain_register_advantages(register):
            register("maxrl", maxrl)

    Since 0.1.0.
    """


@hookspec
def retrain_register_transforms(register: Register) -> None:
    """Register token-level advantage transforms (kind ``transform``), selected by
    ``[algorithm] transform_mode``.

    A transform factory returns a ``retrain.advantages.TransformSpec``.

    Example::

        @hookimpl
        def retrain_register_transforms(register):
            register("gtpo_hicra", make_gtpo_hicra)

    Since 0.1.0.
    """


@hookspec
def retrain_register_environments(register: Register) -> None:
    """Register task sources (kind ``environment``), selected by ``[data] source`` or
    ``[environment] provider``.

    An environment yields ``retrain.types.Task``s (``retrain.protocols.Environment``):
    ``sample(batch_size)`` for training, ``eval_tasks(n)`` for held-out evaluation, and
    ``state_dict()`` / ``load_state_dict()`` for its data cursor; a multi-turn environment
    also runs its own interaction loop. It is built before the backend (``ctx.backend`` and
    ``ctx.tokenizer`` are None then), so that bad data fails before any model loads; checks
    that need the model go in its optional ``check_prompts(ctx)``, called once the backend is
    built (``retrain.protocols.Environment``). As an ``[environment] provider`` it supplies its
    own tasks, so a ``[data]`` task key set in the config is refused as ignored (prompt keys too
    when it has ``rollout``, ``[reward]`` keys when it has ``reward``), unless its optional
    ``config_keys`` lists it (``("data.path",)``): it reads ``ctx.config`` itself.

    Example::

        @hookimpl
        def retrain_register_environments(register):
            register("verifiers", VerifiersEnvironment)

    Since 0.1.0.
    """


@hookspec
def retrain_register_planning_detectors(register: Register) -> None:
    """Register planning-token detectors (kind ``planning_detector``), selected by
    ``[planning] detector``.

    A detector marks the completion tokens that belong to planning phrases: ``mask [N, T]``.

    Example::

        @hookimpl
        def retrain_register_planning_detectors(register):
            register("mined-grams", MinedGramDetector)

    Since 0.1.0.
    """


@hookspec
def retrain_register_loggers(register: Register) -> None:
    """Register metric loggers (kind ``logger``), selected by ``[logging] loggers``.

    A logger receives ``log(step, metrics)`` and ``close()`` (``retrain.protocols.Logger``).

    Example::

        @hookimpl
        def retrain_register_loggers(register):
            register("wandb", WandbLogger)

    Since 0.1.0.
    """


@hookspec
def retrain_register_commands(register: Register) -> None:
    """Register CLI sub-commands (kind ``command``): ``register(name, typer_app)``.

    The factory is a zero-argument callable that returns a ``typer.Typer``; it is mounted as
    ``retrain NAME``.

    Example::

        @hookimpl
        def retrain_register_commands(register):
            register("hicra", lambda: hicra_app)

    Since 0.1.0.
    """


# -- lifecycle ----------------------------------------------------------------------------------
@hookspec
def retrain_start_run(ctx: RunContext, start_step: int) -> None:
    """A run starts: its parts are built and, on resume, the checkpoint is restored.

    Parameters:
        ctx: the run context (``retrain.types.RunContext``: config, run_dir, backend, tokenizer);
            read it, do not change it.
        start_step: 0 for a fresh run, the checkpoint's step on ``--resume``.

    Called on every process of a torchrun job, before the first step (and before the
    evaluation at start).

    Example::

        @hookimpl
        def retrain_start_run(ctx, start_step):
            print(f"{ctx.run_dir}: starting after step {start_step}")

    Since 0.1.0.
    """


@hookspec
def retrain_after_step(ctx: RunContext, step: int, metrics: Mapping[str, float]) -> dict[str, float] | None:
    """A step is done (and its evaluation, when one was due); its metrics are about to be logged.

    Parameters:
        ctx: the run context; read it, do not change it.
        step: the step just completed (1-based).
        metrics: the step's metrics so far (read-only): ``reward/*``, ``loss/*``, ``time/*``, ``eval/*``...

    Return a dict of extra metrics (or None). Every plugin's dict is merged into the step's
    metrics, which the loggers then receive; a key the step already has (a core metric or
    another plugin's) is an error, so a plugin cannot overwrite what the run measured. Prefix
    keys with your plugin's name.

    Example::

        @hookimpl
        def retrain_after_step(ctx, step, metrics):
            return {"myplugin/reward_x2": 2 * metrics["reward/mean"]}

    Since 0.1.0.
    """


@hookspec
def retrain_after_eval(ctx: RunContext, step: int, metrics: Mapping[str, float]) -> None:
    """A held-out evaluation is done (``[eval]``: at start, every N steps, at the end).

    Parameters:
        ctx: the run context; read it, do not change it.
        step: the step evaluated (0 for the evaluation at start).
        metrics: the ``eval/*`` metrics (read-only); the per-problem report is
            ``ctx.run_dir / "eval" / f"step_{step}.json"``.

    Called by the process that evaluates (rank 0 of a torchrun job).

    Example::

        @hookimpl
        def retrain_after_eval(ctx, step, metrics):
            print(f"step {step}: pass@1 {metrics['eval/pass@1']:.2f}")

    Since 0.1.0.
    """


@hookspec
def retrain_stop_run(ctx: RunContext, step: int, metrics: Mapping[str, float]) -> str | None:
    """Ask the run to stop: return a reason (a short sentence), or None to go on.

    Parameters:
        ctx: the run context; read it, do not change it.
        step: the step just completed.
        metrics: the step's logged metrics, including every plugin's extra metrics (read-only).

    Any plugin returning a reason stops the run after this step: the step is logged, a
    checkpoint is saved, each reason is printed (``stop after step N: REASON``) and
    ``retrain_end_run`` receives ``status="stopped"``. ``--resume latest`` continues the run.

    Example::

        @hookimpl
        def retrain_stop_run(ctx, step, metrics):
            if metrics.get("eval/pass@1", 0.0) >= 0.9:
                return "pass@1 reached 0.9"

    Since 0.1.0.
    """


@hookspec
def retrain_after_save(ctx: RunContext, step: int, path: Path) -> None:
    """A checkpoint was written (complete: it is renamed into place before this call).

    Parameters:
        ctx: the run context; read it, do not change it.
        step: the step the checkpoint holds.
        path: the checkpoint folder, ``<run dir>/checkpoints/step_<step>``.

    Called on every process of a torchrun job (each wrote its shard).

    Example::

        @hookimpl
        def retrain_after_save(ctx, step, path):
            shutil.copytree(path, f"/backup/{ctx.run_dir.name}/{path.name}")

    Since 0.1.0.
    """


@hookspec
def retrain_after_load(ctx: RunContext, step: int, path: Path) -> None:
    """A checkpoint was restored (``--resume``, or ``[resume] from``): weights, optimizer, RNG, data cursor.

    Parameters:
        ctx: the run context; read it, do not change it.
        step: the step the checkpoint holds; the run continues with step + 1.
        path: the checkpoint folder that was loaded.

    Example::

        @hookimpl
        def retrain_after_load(ctx, step, path):
            print(f"resumed from {path} at step {step}")

    Since 0.1.0.
    """


@hookspec
def retrain_end_run(ctx: RunContext, last_step: int, status: str) -> None:
    """A run ends, before its components are closed.

    Parameters:
        ctx: the run context; read it, do not change it.
        last_step: the last completed step.
        status: ``"completed"`` (max_steps reached), ``"stopped"`` (a plugin asked),
            ``"interrupted"`` (Ctrl-C / SIGTERM; a checkpoint was saved) or ``"failed"`` (an
            exception is propagating; it is raised again after this hook).

    Example::

        @hookimpl
        def retrain_end_run(ctx, last_step, status):
            print(f"{ctx.run_dir}: {status} after step {last_step}")

    Since 0.1.0.
    """
