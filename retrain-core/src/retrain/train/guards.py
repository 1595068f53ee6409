"""Run-time checks on numbers that cannot be right: a run never reports success on garbage.

One call in the loop after each update::

    train_metrics.update(check_update(ctx, step, rollouts, train_metrics))

checks the engine's sampling logprobs, the loss and the gradient norm. A non-finite one after a
finite step is a transient: the step is skipped (the backend has already refused it: its
contract is to skip the optimizer step on a non-finite gradient norm, which a non-finite logprob
or loss always causes), a warning line says so and ``guard/skipped_steps`` counts it. The first
step of a run, a second non-finite step in a row, or more than ``MAX_SKIPPED_STEPS`` in a run
stop it with one line naming the step and the quantity (:class:`NumericsError`, exit 2);
checkpoints already written are kept.

``check_sync`` runs after each weight sync (the engine's and the trainer's logprobs on a few probe
tokens must agree within ``[inference] sync_tolerance``). ``check_advantage_signs`` (called by
the credit assigner) is the last invariant: within a group,
a sample rewarded above the group mean never gets a negative advantage, nor one below it a
positive one.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from retrain.errors import NumericsError
from retrain.protocols import Engine, optional

if TYPE_CHECKING:
    import torch

    from retrain.types import Rollouts, RunContext

#: Non-finite steps a run may skip (in total, counted from the start or resume) before it stops.
MAX_SKIPPED_STEPS = 3


def _non_finite(values: Any) -> tuple[int, str]:
    """(count, example) of the non-finite entries of a tensor or a float."""
    import torch

    t = torch.as_tensor(values, dtype=torch.float64).reshape(-1)  # [K]
    bad = t[~torch.isfinite(t)]  # [k]
    return int(bad.numel()), (str(float(bad[0])) if bad.numel() else "")


class NonFiniteGuard:
    """Bounds the non-finite steps of one run: a transient one is skipped; a persistent one stops it.

    A step is skipped only when the step before it (in this process) was finite and fewer than
    ``max_skipped`` steps were skipped so far; the first step of a run, a second one in a row, or
    one past the bound raises :class:`NumericsError`. So broken weights or a broken engine stop
    the run at once, and a run never ends with exit 0 having trained on nothing.
    """

    def __init__(self, max_skipped: int = MAX_SKIPPED_STEPS) -> None:
        self.max_skipped = max_skipped
        self.skipped: list[int] = []
        self.previous_ok = False  # no step checked yet: the first one must be finite

    def check(self, step: int, quantities: dict[str, Any]) -> bool:
        """True when every quantity is finite; else record the skip and warn, or raise (see the class)."""
        problems = []
        for name, values in quantities.items():
            count, example = _non_finite(values)
            if count:
                problems.append(f"{name} is {example}" if count == 1 else f"{name} has {count} non-finite values "
                                                                           f"({example})")
        previous_ok, self.previous_ok = self.previous_ok, not problems
        if not problems:
            return True
        what = "; ".join(problems)
        self.skipped.append(step)
        if not previous_ok or len(self.skipped) > self.max_skipped:
            why = (f"{len(self.skipped)} steps were non-finite (steps {', '.join(map(str, self.skipped))}; at most "
                   f"{self.max_skipped} may be skipped)" if len(self.skipped) > self.max_skipped else
                   "the first step of the run is non-finite" if len(self.skipped) == 1 else
                   f"the step before was non-finite too (steps {', '.join(map(str, self.skipped))})")
            raise NumericsError(f"step {step}: {what}; {why}, so the run stops. Check the model's weights, the "
                                "engine, lr and max_grad_norm; checkpoints already written are kept.")
        print(f"warning: step {step}: {what}; the update was skipped ({len(self.skipped)} of at most "
              f"{self.max_skipped} skipped steps)", file=sys.stderr, flush=True)
        return False


def check_update(ctx: RunContext, step: int, rollouts: Rollouts, metrics: dict[str, float]) -> dict[str, float]:
    """Check one step's engine logprobs, loss and gradient norm; returns ``guard/*`` metrics."""
    guard = ctx.extras.setdefault("nonfinite_guard", NonFiniteGuard())
    valid = rollouts.mask > 0  # [N, T]
    quantities: dict[str, Any] = {"engine logprobs": rollouts.logprobs[valid]}  # [K]
    for key, name in (("loss/policy", "loss"), ("train/grad_norm", "gradient norm")):
        if key in metrics:
            quantities[name] = metrics[key]
    ok = guard.check(step, quantities)
    return {"guard/skipped": 0.0 if ok else 1.0, "guard/skipped_steps": float(len(guard.skipped))}


def check_advantage_signs(rewards: torch.Tensor, advantages: torch.Tensor, step: int | None = None,
                          where: str = "advantage mode") -> None:
    """Rewards and advantages ``[B, G]``: raise when a sign contradicts the rewards within a group.

    Above the group mean -> advantage >= 0; below -> <= 0 (a tolerance absorbs float rounding).
    Non-finite advantages are an error too.
    """
    import torch

    at = f" at step {step}" if step is not None else ""
    if not torch.isfinite(advantages).all():
        b = int((~torch.isfinite(advantages)).any(1).nonzero()[0, 0])
        raise NumericsError(f"{where}{at}: non-finite advantages {advantages[b].tolist()} for group {b} "
                            f"(rewards {rewards[b].tolist()}).")
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # [B, G]
    tol = 1e-6 * (1.0 + rewards.abs().amax(dim=1, keepdim=True))  # [B, 1]
    wrong = ((centred > tol) & (advantages < -1e-6)) | ((centred < -tol) & (advantages > 1e-6))  # [B, G]
    if wrong.any():
        b = int(wrong.any(1).nonzero()[0, 0])
        r = [round(x, 6) for x in rewards[b].tolist()]
        a = [round(x, 6) for x in advantages[b].tolist()]
        raise NumericsError(f"{where}{at}: advantages {a} contradict rewards {r} in group {b} (a sample above the "
                            "group mean got a negative advantage, or one below it a positive one); it would "
                            "push the better samples down.")


#: Probe tokens the engine samples after each weight sync (check_sync).
SYNC_PROBE_TOKENS = 8


def check_sync(ctx: RunContext, engine: Any, backend: Any, step: int, prompt_ids: list[list[int]], *,
               force: bool = False, processes: int = 1) -> dict[str, float]:
    """After a weight sync: the engine samples ``SYNC_PROBE_TOKENS`` tokens for one prompt, the trainer
    scores them; a mean |logprob| gap above ``[inference] sync_tolerance`` is a :class:`NumericsError`.

    Catches an engine that samples from other weights than the trainer holds (a partial reload, a
    stale output layer, a wrong adapter). Skipped when the tolerance is 0, under torchrun (``processes``
    > 1, the shard plan's), for a
    backend without ``logprobs``, and for engines that sample from the trainer's own tensors
    (``shares_weights``: the pytorch engine) unless ``force`` or they sample from a copy of them
    (``samples_from_copy``: a snapshot, ``[inference] device``). Returns ``{"sync/logprob_gap": gap}``.
    """
    import torch

    from retrain.types import Rollouts, SamplingParams, Task

    tol = ctx.config.inference.sync_tolerance
    if tol <= 0 or processes > 1 or not hasattr(backend, "logprobs") or not prompt_ids:
        return {}
    own_tensors = optional(engine, Engine, "shares_weights") and not optional(engine, Engine, "samples_from_copy")
    if own_tensors and not force:
        return {}  # it samples from the trainer's own tensors: nothing to compare (and a probe costs ~a step on CPU)
    guard = ctx.extras.get("nonfinite_guard")
    if guard is not None and guard.skipped and guard.skipped[-1] == step:
        return {}  # a non-finite step: NonFiniteGuard has reported it (and bounds how many may pass)
    t = ctx.config.training
    probe = [list(prompt_ids[0])]
    params = SamplingParams(n=1, max_tokens=min(SYNC_PROBE_TOKENS, t.max_tokens), temperature=t.temperature,
                            top_p=1.0, seed=step)
    gen = engine.generate(probe, params)
    rollouts = Rollouts.from_generation([Task("sync probe", "")], probe, gen, 1)  # [1, T]
    mask = rollouts.mask  # [1, T]
    if not mask.any():
        return {}
    with torch.no_grad():
        trainer, _ = backend.logprobs(rollouts)  # [1, T]
    gap = float(((trainer.detach().float().cpu() - rollouts.logprobs) * mask).abs().sum() / mask.sum())
    if not gap <= tol:  # also catches nan
        raise NumericsError(f"step {step}: after the weight sync, the engine's logprobs differ from the trainer's by "
                            f"{gap:.3g} nats per token ({int(mask.sum())} probe tokens; [inference] sync_tolerance = "
                            f"{tol}): the engine samples from other weights than the trainer holds. Check the "
                            "engine's weight sync (docs/engines.md); raise sync_tolerance only for known numeric "
                            "differences.")
    return {"sync/logprob_gap": gap}


def model_context(model: Any) -> int | None:
    """The longest sequence (prompt + completion) a model's position embeddings allow, if it says."""
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def context_budget(ctx: Any) -> tuple[int, int] | None:
    """(the trainer model's context, the largest max_tokens a run asks for), or None when unknown."""
    context = model_context(getattr(getattr(ctx, "backend", None), "model", None))
    cfg = getattr(ctx, "config", None)
    if context is None or cfg is None:
        return None
    return context, max(cfg.training.max_tokens, cfg.eval.max_tokens)


def check_context(model: Any, prompt_ids: list[list[int]], max_tokens: int) -> None:
    """Refuse (one line, before any allocation) a prompt that cannot fit with ``max_tokens`` completion tokens."""
    from retrain.errors import ConfigError

    context = model_context(model)
    if context is None or not prompt_ids:
        return
    longest = max(len(p) for p in prompt_ids)
    if longest + max_tokens > context:
        raise ConfigError(f"a prompt of {longest} tokens + max_tokens {max_tokens} = {longest + max_tokens} tokens "
                          f"exceeds the model's context of {context} (config.json max_position_embeddings); "
                          "shorten the prompts ([data] prompt_template, system_prompt, few_shot, or the data) or "
                          "lower [training]/[eval] max_tokens.")


__all__ = ["MAX_SKIPPED_STEPS", "SYNC_PROBE_TOKENS", "check_sync", "NonFiniteGuard", "check_update", "check_advantage_signs", "check_context",
           "context_budget", "model_context"]
