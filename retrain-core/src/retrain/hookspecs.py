"""Hook specifications of the ``retrain`` pluggy project.

A plugin is a module (found through the ``retrain`` entry-point group, or registered in-process)
that implements some of these hooks with ``@retrain.hookimpl``. Registration hooks receive a
``register(name, component)`` callback; a component is a plain function (an advantage or a reward,
called with the kind's inputs) or a factory, a class or function whose typed keyword arguments
are its config options (docs/plugins.md, "Two forms"). A factory may also declare a ``ctx``
parameter, which receives the run context and is not an option.

Specs evolve by adding: parameters are added, never renamed or removed. The core calls every hook
through pluggy with all of its spec's arguments, and a hookimpl names only those it uses, so an
implementation written against an older spec keeps working (tests/core/test_plugin_forms.py).
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "retrain"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``register(name, factory)``: add one component under ``name``.
Register = Callable[[str, Callable[..., Any]], None]


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
    also runs its own interaction loop.

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
