"""Reusable contract checks for plugin authors' tests (shape, dtype, finiteness, no mutation, determinism).

    from retrain.testing.contracts import check_transform_spec, check_advantage

    def test_my_transform_contract():
        check_transform_spec(make_transform_spec())

Each check raises ``AssertionError`` with a message naming the broken rule.
"""

from __future__ import annotations

from typing import Any


def sample_batch(n_groups: int = 2, group_size: int = 4, tokens: int = 6, seed: int = 0) -> dict[str, Any]:
    """A small deterministic batch: rewards [N], uncertainty [N, T], planning and valid masks [N, T]."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n = n_groups * group_size
    rewards = (torch.rand(n, generator=g) > 0.5).float()  # [N]
    rewards[:group_size] = torch.tensor([1.0] + [0.0] * (group_size - 1))  # one group with signal
    h = torch.rand(n, tokens, generator=g) * 2.0  # [N, T]
    lengths = torch.randint(1, tokens + 1, (n,), generator=g)  # [N]
    valid = torch.arange(tokens).unsqueeze(0) < lengths.unsqueeze(1)  # [N, T]
    planning = (torch.rand(n, tokens, generator=g) < 0.3) & valid  # [N, T]
    return {"rewards": rewards, "h": h * valid, "valid": valid, "planning": planning, "group_size": group_size}


def _clone(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v.clone() if hasattr(v, "clone") else v for k, v in batch.items()}


def _assert_same_inputs(before: dict[str, Any], after: dict[str, Any], who: str) -> None:
    import torch

    for k, v in before.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, after[k]), f"{who} modified its input {k!r} in place"


def check_advantage(advantage: Any, group_size: int = 4, n_groups: int = 3) -> None:
    """An episode advantage: [B, G] -> [B, G] float, finite, deterministic, input untouched,
    exactly 0 on groups with equal rewards, signs that follow the rewards (negative ones too)."""
    import torch

    rewards = torch.tensor([[1.0] + [0.0] * (group_size - 1), [0.5] * group_size, [0.0] * group_size])[:n_groups]
    before = rewards.clone()
    out = torch.as_tensor(advantage(rewards))
    assert out.shape == rewards.shape, f"advantage returned shape {tuple(out.shape)}, expected {tuple(rewards.shape)}"
    assert out.dtype.is_floating_point, f"advantage returned dtype {out.dtype}, expected a float dtype"
    assert torch.isfinite(out).all(), "advantage returned non-finite values"
    assert torch.equal(rewards, before), "advantage modified its input rewards in place"
    assert torch.equal(torch.as_tensor(advantage(rewards.clone())), out), "advantage is not deterministic"
    assert (out[1:] == 0).all(), "groups with equal rewards must get exactly zero advantage"
    assert out[0, 0] > 0 > out[0, 1], "the only correct sample must get a positive advantage, the others negative"
    from retrain.train.guards import check_advantage_signs

    negative = torch.linspace(-1.0, 0.5, group_size).unsqueeze(0)  # [1, G]: a negative group mean (combo rewards)
    check_advantage_signs(negative, torch.as_tensor(advantage(negative)), where="advantage on negative rewards")


def transformed_token_advantages(spec: Any, batch: dict[str, Any], sepa_lambda: float = 0.5,
                                 beta: float = 0.1) -> Any:
    """Run a TransformSpec the way the credit assigner does on a sample batch: token advantages [N, T]."""
    from retrain.advantages.credit import Credit
    from retrain.advantages.episode import GRPO

    credit = Credit(GRPO(), spec, gtpo_beta=spec.gtpo_beta if spec.gtpo_beta is not None else beta)
    return credit.transform_batch(batch["rewards"], batch["group_size"], batch["h"], batch["planning"],
                                  batch["valid"], sepa_lambda)


def check_transform_spec(spec: Any, *, seeds: tuple[int, ...] = (0, 1), sepa_lambdas: tuple[float, ...] = (0.0, 0.5, 1.0)) -> None:
    """A TransformSpec: the seed fields exist; on sample batches its token advantages are [N, T]
    float32, finite, zero off the valid mask, deterministic; inputs are not modified; the
    per-row entropy_transform returns one value per token."""
    import torch

    from retrain.advantages import TransformSpec

    assert isinstance(spec, TransformSpec), f"expected a TransformSpec, got {type(spec).__name__}"
    for field in ("name", "use_gtpo", "needs_planning", "uses_sepa_controller", "entropy_transform"):
        assert hasattr(spec, field), f"TransformSpec lacks the field {field!r}"
    assert isinstance(spec.name, str) and spec.name, "TransformSpec.name must be a non-empty string"
    for seed in seeds:
        batch = sample_batch(seed=seed)
        for lam in sepa_lambdas:
            frozen = _clone(batch)
            out = transformed_token_advantages(spec, batch, lam)
            who = f'transform "{spec.name}" (seed {seed}, lambda {lam})'
            _assert_same_inputs(frozen, batch, who)
            assert out.shape == batch["h"].shape, f"{who}: shape {tuple(out.shape)}, expected {tuple(batch['h'].shape)}"
            assert out.dtype == torch.float32, f"{who}: dtype {out.dtype}, expected float32"
            assert torch.isfinite(out).all(), f"{who}: non-finite token advantages"
            assert (out[~batch["valid"]] == 0).all(), f"{who}: non-zero advantage on masked tokens"
            again = transformed_token_advantages(spec, _clone(frozen), lam)
            assert torch.equal(out, again), f"{who}: not deterministic"
    if spec.entropy_transform is not None:
        row = [0.5, 1.0, 2.0, 0.25]
        out = spec.entropy_transform(list(row), [1, 0, 0, 1], 0.5)
        assert len(out) == len(row), f'transform "{spec.name}": entropy_transform must return one value per token'
        assert all(isinstance(float(x), float) for x in out)


def check_planning_detector(detector: Any, tokenizer: Any, texts: list[str] | None = None) -> None:
    """A planning detector: ``detect(rollouts, tokenizer)`` -> bool ``[N, T]``, False off the mask,
    deterministic, rollouts untouched."""
    import torch

    from retrain.types import Generation, Rollouts, Task

    texts = texts or ["Wait, let me check: 2+2=4.", "4", "Another approach: 3+1.", ""]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    gen = Generation(completion_ids=ids, logprobs=[[-1.0] * len(i) for i in ids], finish_reasons=["stop"] * len(ids),
                     texts=texts, policy_version=0)
    rollouts = Rollouts.from_generation([Task(prompt="p", answer="4")], [[0]], gen, len(ids))
    before = (rollouts.completion_ids.clone(), rollouts.mask.clone(), rollouts.logprobs.clone())
    out = detector.detect(rollouts, tokenizer)
    who = f"planning detector {type(detector).__name__}"
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bool, f"{who}: expected a bool tensor"
    assert out.shape == rollouts.mask.shape, f"{who}: shape {tuple(out.shape)}, expected {tuple(rollouts.mask.shape)}"
    assert not out[rollouts.mask == 0].any(), f"{who}: marks padding tokens"
    assert torch.equal(out, detector.detect(rollouts, tokenizer)), f"{who}: not deterministic"
    for name, a, b in zip(("completion_ids", "mask", "logprobs"), before,
                          (rollouts.completion_ids, rollouts.mask, rollouts.logprobs)):
        assert torch.equal(a, b), f"{who}: modified rollouts.{name} in place"


def check_reward(reward: Any, responses: list[str] | None = None, references: list[str] | None = None) -> None:
    """A reward: ``score(responses, references)`` -> RewardResult with one finite float per response,
    deterministic, inputs untouched."""
    import math

    from retrain.protocols import RewardResult

    responses = responses or ["The answer is 4.", "5", "", "4"]
    references = references or ["4", "4", "4", "4"]
    before = (list(responses), list(references))
    result = reward.score(responses, references)
    who = f"reward {type(reward).__name__}"
    assert isinstance(result, RewardResult), f"{who}: expected a RewardResult, got {type(result).__name__}"
    assert len(result.rewards) == len(responses), f"{who}: {len(result.rewards)} rewards for {len(responses)} responses"
    assert all(isinstance(r, float) and math.isfinite(r) for r in result.rewards), f"{who}: non-finite or non-float"
    assert (list(responses), list(references)) == before, f"{who}: modified its inputs"
    assert reward.score(responses, references).rewards == result.rewards, f"{who}: not deterministic"


def check_environment(make: Any, batch_size: int = 4) -> None:
    """An environment (``make()`` builds a fresh one): ``sample(B)`` gives B Tasks with string
    answers; two fresh ones give the same stream; ``state_dict``/``load_state_dict`` resume it;
    ``eval_tasks(n)`` gives the same n tasks on every call."""
    from retrain.types import Task

    env = make()
    first = env.sample(batch_size)
    who = f"environment {type(env).__name__}"
    assert len(first) == batch_size and all(isinstance(t, Task) for t in first), f"{who}: sample() must give Tasks"
    assert all(isinstance(t.answer, str) for t in first), f"{who}: Task.answer must be a string"
    state = env.state_dict()
    second = env.sample(batch_size)
    again = make()
    assert again.sample(batch_size) == first, f"{who}: two fresh environments give different streams"
    again.load_state_dict(state)
    assert again.sample(batch_size) == second, f"{who}: load_state_dict does not resume the stream"
    assert env.eval_tasks(3) == make().eval_tasks(3) and len(env.eval_tasks(3)) == 3, \
        f"{who}: eval_tasks(n) must give the same n tasks every time"


def check_engine(engine: Any, prompts: list[list[int]] | None = None, n: int = 2, max_tokens: int = 4) -> None:
    """An engine: ``generate`` gives B*n rows of ids with one finite logprob <= 0 each, at most
    ``max_tokens``, a finish reason and a text per row; the same seed samples the same rows;
    ``sync(backend, version)`` sets the policy version the rows report."""
    import math

    from retrain.types import SamplingParams

    prompts = prompts or [[5, 6, 7], [8]]
    params = SamplingParams(n=n, max_tokens=max_tokens, temperature=1.0, seed=3)
    gen = engine.generate(prompts, params)
    who = f"engine {type(engine).__name__}"
    rows = len(prompts) * n
    assert len(gen.completion_ids) == len(gen.logprobs) == len(gen.finish_reasons) == len(gen.texts) == rows, \
        f"{who}: expected {rows} rows (B prompts x n samples)"
    for ids, lps, reason in zip(gen.completion_ids, gen.logprobs, gen.finish_reasons, strict=True):
        assert 0 < len(ids) <= max_tokens and len(lps) == len(ids), f"{who}: a row has {len(ids)} ids, {len(lps)} logprobs"
        assert all(math.isfinite(x) and x <= 0 for x in lps), f"{who}: logprobs must be finite and <= 0"
        assert reason in ("stop", "length"), f"{who}: finish reason {reason!r}"
    assert engine.generate(prompts, params).completion_ids == gen.completion_ids, f"{who}: same seed, other samples"
    engine.sync(None, 7)
    assert engine.generate(prompts, params).policy_version == 7, f"{who}: sync(backend, 7) must set the policy version"
