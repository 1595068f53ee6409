"""Running verifiers episodes with a retrain engine as the model, and turning them into rows.

Every episode (a task x one of its G samples) runs the environment's own loop
(``Env.run_episode``: ``SingleAgentEnv`` for a plain taskset, the environment's ``vf.Env``
subclass for a multi-turn game), concurrently in one event loop, inside ``env.serving()``.
Model calls reach :class:`~retrain_verifiers.client.EngineClient` through verifiers'
interception server; the client batches them across episodes and records exact token ids.
Rewards are the trace's weighted rewards (``@vf.reward`` functions, judges, rewards the
environment records in ``run``/``finalize``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from retrain.types import Generation, SamplingParams


@dataclass
class EpisodeRows:
    """What one rollout call produced: N rows (groups contiguous) plus per-row scores."""

    prompt_ids: list[list[int]]  # N
    generation: Generation
    rewards: list[float]  # N
    terms: dict[str, list[float]] = field(default_factory=dict)  # each [N]
    errors: int = 0  # episodes that failed (scored 0)
    turns: list[int] = field(default_factory=list)  # N, model turns per episode
    batch_sizes: list[int] = field(default_factory=list)  # engine call sizes


def run_episodes(env: Any, vf_tasks: list[Any], group_size: int, engine: Any, tokenizer: Any,
                 params: SamplingParams) -> EpisodeRows:
    """Run ``group_size`` episodes of each task; rows are task-major (rows g*G..g*G+G-1 = task g)."""
    return asyncio.run(_run(env, vf_tasks, group_size, engine, tokenizer, params))


async def _run(env: Any, vf_tasks: list[Any], group_size: int, engine: Any, tokenizer: Any,
               params: SamplingParams) -> EpisodeRows:
    from verifiers.v1 import ModelContext, SamplingConfig

    from retrain_verifiers.client import ENGINE_CLIENT_CONFIG, POLICY_MODEL, EngineClient, GenerationBatcher
    from retrain_verifiers.tokens import ChatTokens, TokenLedger

    ledger = TokenLedger(ChatTokens(tokenizer))
    batcher = GenerationBatcher(engine, params)
    client = EngineClient(batcher, ledger)
    ctx = ModelContext(model=POLICY_MODEL, client=ENGINE_CLIENT_CONFIG,
                       sampling=SamplingConfig(temperature=params.temperature, top_p=params.top_p,
                                               max_tokens=params.max_tokens))
    async with env.serving():
        # The interception server keeps one client per endpoint config; ours answers for the engine.
        env._interception.clients[ENGINE_CLIENT_CONFIG.model_dump_json()] = client
        episodes = await asyncio.gather(*(env.run_episode(task, ctx) for task in vf_tasks
                                          for _ in range(group_size)))
    tasks = [task for task in vf_tasks for _ in range(group_size)]
    return _rows(episodes, tasks, ledger, batcher, tokenizer)


def task_messages(vf_task: Any) -> list[dict[str, Any]]:
    """The opening chat messages of a verifiers task (system prompt + prompt)."""
    from verifiers.v1.dialects.chat import message_to_wire

    data = vf_task.data
    messages: list[dict[str, Any]] = [{"role": "system", "content": data.system_prompt}] if data.system_prompt else []
    if isinstance(data.prompt, str):
        messages.append({"role": "user", "content": data.prompt})
    elif data.prompt:
        messages += [message_to_wire(m) for m in data.prompt]
    return messages


def _trainable_trace(episode: Any) -> Any | None:
    traces = [t for t in episode.traces if t.agent is None or t.agent.trainable]
    return traces[0] if traces else None


def _rows(episodes: list[Any], episode_tasks: list[Any], ledger: Any, batcher: Any, tokenizer: Any) -> EpisodeRows:
    prompt_ids, completions, masks, logprobs, finish, texts = [], [], [], [], [], []
    rewards: list[float] = []
    terms: dict[str, list[float]] = {}
    turns: list[int] = []
    errors = 0
    for i, episode in enumerate(episodes):
        trace = _trainable_trace(episode)
        row = ledger.rows.get(trace.id) if trace is not None else None
        failed = trace is None or not episode.ok or row is None
        errors += int(failed)
        rewards.append(0.0 if failed else float(trace.reward))
        for name, r in (trace.rewards.items() if trace is not None and not failed else ()):
            terms.setdefault(name, [0.0] * i).append(float(r.value) if r is not None else 0.0)
        for values in terms.values():
            values.extend([0.0] * (i + 1 - len(values)))
        if row is None:  # the episode failed before its first model call: an empty, untrained row
            prompt_ids.append(ledger.chat.first_prompt(task_messages(episode_tasks[i])))
            completions.append([]), masks.append([]), logprobs.append([]), finish.append("error"), texts.append("")
            turns.append(0)
            continue
        prompt_ids.append(row.prompt_ids)
        completions.append(row.completion_ids)
        masks.append(row.loss_mask)
        logprobs.append(row.logprobs)
        finish.append(row.last_finish or "stop")
        texts.append(tokenizer.decode(row.completion_ids, skip_special_tokens=True))
        turns.append(row.turns)
    version = batcher.policy_version if batcher.policy_version is not None else 0
    gen = Generation(completion_ids=completions, logprobs=logprobs, finish_reasons=finish, texts=texts,
                     policy_version=version, loss_mask=masks)
    return EpisodeRows(prompt_ids, gen, rewards, terms, errors, turns, list(batcher.batch_sizes))
