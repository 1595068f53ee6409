"""Loading a verifiers 0.4 environment for training: config, role pinning, train/eval tasks.

verifiers 0.4 loads ``vf.load_environment(vf.resolve_env_config({"taskset": {"id": ID, **args}}))``.
retrain pins every agent role of the environment to what a training process needs:
the in-process chat harness (``retrain_verifiers``), the local ``subprocess`` runtime (no
sandbox service), a single loopback interception server, and ``max_turns``.

verifiers 0.4 has no train/eval split. retrain's convention (docs/verifiers.md):

- a taskset whose config has a ``split`` field trains on ``split = "train"`` (or the split
  given in ``[environment] args``) and evaluates on the first of ``test``/``eval``/``validation``
  that it accepts;
- any other taskset is one stream: the first ``n_eval`` tasks (at most a quarter of a finite
  taskset) are held out for evaluation and training uses the rest;
- a taskset that yields no training tasks (``EVAL_ONLY = True`` on the class, a ``split`` field
  that refuses ``"train"``, or nothing left after the held-out tasks) is *eval-only* and refused.
"""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import ValidationError
from retrain.errors import ConfigError

from retrain_verifiers import HARNESS_ID

EVAL_SPLITS = ("test", "eval", "validation")


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("taskset",))
    return f"{loc}: {err.get('msg', '')}" if loc else str(err.get("msg", ""))


def resolve_config(env_id: str, args: dict[str, Any], max_turns: int, where: str) -> Any:
    """The validated ``EnvConfig``, every agent role pinned to the in-process training setup."""
    import verifiers.v1 as vf
    from verifiers.v1.configs.agent import agent_config_fields

    base = {"taskset": {"id": env_id, **args}, "interception": {"type": "server"}}
    try:
        first = vf.resolve_env_config(base)
        roles = {name: {"harness": {"id": HARNESS_ID}, "runtime": {"type": "subprocess"}, "max_turns": max_turns}
                 for name in agent_config_fields(first)}
        return vf.resolve_env_config({**base, **roles})
    except ValidationError as e:
        raise ConfigError(f'{where} = "{env_id}": the environment rejected [environment] args '
                          f"({_first_error(e)}). Accepted args are the fields of its taskset config.") from None


def split_field(env_id: str) -> bool:
    import verifiers.v1 as vf

    return "split" in vf.taskset_config_type(env_id).model_fields


def try_config(env_id: str, args: dict[str, Any], max_turns: int, where: str) -> Any | None:
    """Like :func:`resolve_config`, but None when the args are refused (e.g. an unknown split)."""
    try:
        return resolve_config(env_id, args, max_turns, where)
    except ConfigError:
        return None


def load_env(config: Any) -> Any:
    import verifiers.v1 as vf

    return vf.load_environment(config)


def take(taskset: Any, n: int) -> list[Any]:
    return list(itertools.islice(iter(taskset), n))


class TaskSource:
    """Training stream and held-out tasks of one environment (see the module doc for the rules)."""

    def __init__(self, env_id: str, args: dict[str, Any], max_turns: int, n_eval: int, where: str) -> None:
        self.env_id = env_id
        self.where = where
        eval_only = (f'{where} = "{env_id}": this verifiers environment is eval-only (it yields no training tasks{{why}}). '
                     "Use it to evaluate a trained model (e.g. `vf-eval`), or train on an environment with "
                     'training data (a taskset with a "train" split or more tasks than [eval] num_problems).')
        has_split = split_field(env_id)
        if has_split and "split" not in args:
            resolve_config(env_id, args, max_turns, where)  # bad args are their own error, not "eval-only"
            config = try_config(env_id, {**args, "split": "train"}, max_turns, where)
            if config is None:
                raise ConfigError(eval_only.format(why='; its split field refuses "train"'))
        else:
            config = resolve_config(env_id, args, max_turns, where)
        self.env = load_env(config)
        taskset = self.env.taskset
        if getattr(type(taskset), "EVAL_ONLY", False):
            raise ConfigError(eval_only.format(why="; its taskset sets EVAL_ONLY = True"))
        self.eval_env = None
        self.infinite = not taskset.bounded
        if has_split:
            self.held_out: list[Any] = []
            for split in EVAL_SPLITS:
                if split == args.get("split"):
                    continue
                eval_config = try_config(env_id, {**args, "split": split}, max_turns, where)
                if eval_config is not None:
                    self.eval_env = load_env(eval_config)
                    self.held_out = take(self.eval_env.taskset, n_eval)
                    break
            self.train_view = taskset
        else:  # one stream: hold out the first n_eval tasks (at most a quarter of a finite taskset)
            n_hold = n_eval if self.infinite else min(n_eval, len(take(taskset, n_eval * 4 + 4)) // 4)
            self.held_out = take(taskset, n_hold)
            self.train_view = taskset.skip(n_hold)
        self.train_list: list[Any] | None = None if self.infinite else list(self.train_view)
        if self.train_list is not None and not self.train_list:
            n = len(self.held_out)
            raise ConfigError(eval_only.format(
                why=f"; all of its {n} task(s) are held out for evaluation" if n else "; its taskset is empty"))
        self._stream: list[Any] = []
        self._stream_iter = None if self.train_list is not None else iter(self.train_view)

    def train_task(self, k: int, seed: int) -> Any:
        """The k-th training task: a seeded shuffle per epoch (finite) or the stream order (infinite)."""
        import random

        if self.train_list is not None:
            size = len(self.train_list)
            order = list(range(size))
            random.Random(seed * 100_003 + k // size).shuffle(order)
            return self.train_list[order[k % size]]
        while len(self._stream) <= k:
            assert self._stream_iter is not None
            self._stream.append(next(self._stream_iter))
        return self._stream[k]
