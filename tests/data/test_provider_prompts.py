"""Keys an [environment] provider would ignore are refused (``retrain.config.check_provider_keys``):
[data] task keys always, [data] prompt keys when the environment renders its own prompts (it runs its
own episodes: ``Environment.rollout``; applied when the loop renders them), [reward] keys when it brings
its own reward; a key the environment lists in ``config_keys`` is read, not refused.
The refusal comes from the pre-flight check (``retrain config`` too) when the registered class
declares it, else from building the environment, which happens before any model loads."""

from __future__ import annotations

import textwrap
import types

import pytest
from retrain.config import config_from_dict
from retrain.errors import ConfigError
from retrain.plugins import load_plugins
from retrain.train.parts import build_parts
from retrain.types import RunContext

PROVIDERS = '''
from retrain import hookimpl
from retrain.types import Task


class Tasks:
    def sample(self, batch_size):
        return [Task("1+1", "2", f"t{i}") for i in range(batch_size)]

    def eval_tasks(self, n):
        return [Task("2+2", "4", f"e{i}") for i in range(n)]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class OwnEpisodes(Tasks):
    """Runs its own episodes (a rollout method, as retrain-verifiers)."""

    def rollout(self, engine, tokenizer, tasks, params):
        raise AssertionError("not reached")


class LateEpisodes(Tasks):
    """Decides when built whether it runs its own episodes (invisible to the pre-flight check)."""

    def __init__(self):
        self.rollout = lambda engine, tokenizer, tasks, params: None


class LoopEpisodes(Tasks):
    """The loop renders its prompts, with the [data] prompt keys."""


class OwnReward(Tasks):
    """Scores with its own reward; reads [data] path and [reward] timeout itself."""

    config_keys = ("data.path", "reward.timeout")

    def __init__(self):
        self.reward = object()


@hookimpl
def retrain_register_environments(register):
    register("own_episodes", OwnEpisodes)
    register("late_episodes", LateEpisodes)
    register("loop_episodes", LoopEpisodes)
    register("own_reward", OwnReward)
'''

#: Each [data] prompt key with a value other than its default.
SET_KEYS = {"prompt_template": "Q: {problem}", "system_prompt": "Be brief.",
            "few_shot": [{"problem": "1+1", "response": "2"}], "chat_template": "none",
            "chat_template_kwargs": {"enable_thinking": False}}


def registry():
    mod = types.ModuleType("provider_fixture")
    exec(textwrap.dedent(PROVIDERS), mod.__dict__)
    return load_plugins(entry_points=False, extra=[mod])


def config(provider: str, key: str, tmp_path):
    return config_from_dict({"environment": {"provider": provider}, "data": {key: SET_KEYS[key]},
                             "model": {"model": str(tmp_path / "no-model")}}, source="r.toml")


def expected(key: str, provider: str, shown: str | None = None, section: str = "data",
             what: str = "prompts (its tasks' messages, rendered with the tokenizer's chat template)") -> str:
    from retrain.config import _show

    shown = shown or _show(SET_KEYS[key])
    return (f'r.toml: [{section}] {key} = {shown} is not applied with [environment] provider = "{provider}": the '
            f"environment supplies its own {what}; remove it, or train from [data] and [reward] instead.")


@pytest.mark.parametrize("key", SET_KEYS)
def test_a_prompt_key_is_refused_by_the_preflight_check_when_the_provider_renders_its_own(key, tmp_path):
    reg = registry()
    with pytest.raises(ConfigError) as e:
        reg.check_config(config("own_episodes", key, tmp_path))
    assert str(e.value) == expected(key, "own_episodes")


@pytest.mark.parametrize("key", ["prompt_template", "chat_template_kwargs"])
def test_a_provider_known_to_render_its_own_only_once_built_is_refused_before_the_model(key, tmp_path):
    reg = registry()
    cfg = config("late_episodes", key, tmp_path)
    reg.check_config(cfg)  # the class does not say: the built environment does
    with pytest.raises(ConfigError) as e:  # the model folder does not exist: reading it would be the error
        build_parts(RunContext(config=cfg, registry=reg))
    assert str(e.value) == expected(key, "late_episodes")


def test_the_prompt_keys_apply_when_the_loop_renders_the_provider_prompts(tmp_path):
    from retrain.train.episodes import PromptEpisodes, episodes_for

    reg = registry()
    cfg = config("loop_episodes", "prompt_template", tmp_path)
    reg.check_config(cfg)
    with pytest.raises(ConfigError, match="no-model"):  # past the environment: the model is the next thing read
        build_parts(RunContext(config=cfg, registry=reg))
    ctx = RunContext(config=cfg, registry=reg)
    environment = reg.build("environment", "loop_episodes", ctx=ctx)
    assert isinstance(episodes_for(ctx, environment, engine=None), PromptEpisodes)  # renders with [data] keys
    # defaults everywhere: nothing to refuse, whoever renders
    reg.check_config(config_from_dict({"environment": {"provider": "own_episodes"}}, source="r.toml"))


@pytest.mark.parametrize(("key", "value"), [("source", "jsonl"), ("path", "tasks.jsonl"), ("levels", [2]),
                                            ("preset", "gsm8k")])
def test_a_task_key_is_refused_under_any_provider(key, value, tmp_path):
    from retrain.config import _show

    reg = registry()
    cfg = config_from_dict({"environment": {"provider": "loop_episodes"}, "data": {key: value},
                            "model": {"model": str(tmp_path / "no-model")}}, source="r.toml")
    with pytest.raises(ConfigError) as e:
        reg.check_config(cfg)
    assert str(e.value) == expected(key, "loop_episodes", _show(value), what="tasks")


def test_reward_keys_are_refused_when_the_provider_scores_and_declared_keys_are_read(tmp_path):
    reg = registry()

    def cfg(data: dict, reward: dict):
        return config_from_dict({"environment": {"provider": "own_reward"}, "data": data, "reward": reward,
                                 "model": {"model": str(tmp_path / "no-model")}}, source="r.toml")

    with pytest.raises(ConfigError) as e:  # the class does not show its reward: building it does
        build_parts(RunContext(config=cfg({}, {"type": "match"}), registry=reg))
    assert str(e.value) == expected("type", "own_reward", '"match"', section="reward", what="reward")
    # [data] path and [reward] timeout are in its config_keys: read, so past the environment to the model
    with pytest.raises(ConfigError, match="no-model"):
        build_parts(RunContext(config=cfg({"path": "tasks.jsonl"}, {"timeout": 9.0}), registry=reg))
