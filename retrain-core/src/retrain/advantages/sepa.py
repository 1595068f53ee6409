"""SEPA: pool execution-token uncertainty toward its mean, with a scheduled strength lambda.

Pooling (per row, execution tokens only; planning tokens keep their value)::

    h'_t = lambda * mean_exec(h) + (1 - lambda) * h_t      for execution tokens t
    h'_t = h_t                                              for planning tokens

``mean_exec`` is the mean of ``h`` over the row's valid execution tokens. With lambda = 1 every
execution token gets the same uncertainty, so GTPO stops spreading credit across routine
execution and concentrates it on planning tokens.

Controllers (``[sepa] schedule``), both behind a sticky correct-rate gate:

- ``linear``: lambda(step) = 0 for step <= delay_steps, then (step - delay_steps) / steps,
  capped at 1 (``steps = 0``: jumps to 1 right after the delay).
- ``auto``: variance-driven, never below linear. Each step it observes v = the variance of the
  raw uncertainty over all valid execution tokens of the batch and keeps an EMA
  ``v_ema <- d*v_ema + (1-d)*v`` (``ema_decay`` d). After ``warmup`` observations the EMA is
  frozen as the reference ``v_0``. Then ``r = v_ema / v_0`` and
  ``lambda_auto = clip((1 - r) / (1 - var_target), 0, 1)``: no pooling while execution
  uncertainty is as spread as it was early on, full pooling once its variance has fallen to
  ``var_target`` of the reference (execution has become routine). lambda = max(lambda_auto,
  lambda_linear).
- Gate (``correct_rate_gate``): lambda stays 0 until the batch correct rate (fraction of rows
  with reward >= 0.5) first reaches the gate; from then on the gate stays open (sticky, and
  checkpointed). A gate of 0 is open from the start.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from retrain.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: a row counts as correct when its reward is at least this
CORRECT_THRESHOLD = 0.5


def sepa_pool_row(entropies: list[float], planning_mask: list[int], sepa_lambda: float) -> list[float]:
    """SEPA pooling of one row (the seed's ``entropy_transform`` signature)."""
    execution = [h for h, m in zip(entropies, planning_mask) if not m]
    if not execution or sepa_lambda == 0.0:
        return list(entropies)
    mean_exec = sum(execution) / len(execution)
    return [h if m else sepa_lambda * mean_exec + (1.0 - sepa_lambda) * h
            for h, m in zip(entropies, planning_mask)]


def sepa_pool_tensor(h: torch.Tensor, planning: torch.Tensor, valid: torch.Tensor,
                     sepa_lambda: float) -> torch.Tensor:
    """SEPA pooling of a batch: ``h [N, T]``, bool ``planning``/``valid [N, T]`` -> ``[N, T]``."""
    execution = (valid & ~planning).to(h.dtype)  # [N, T]
    count = execution.sum(dim=1, keepdim=True)  # [N, 1]
    mean_exec = (h * execution).sum(dim=1, keepdim=True) / count.clamp(min=1.0)  # [N, 1]
    pooled = sepa_lambda * mean_exec + (1.0 - sepa_lambda) * h  # [N, T]
    return h.where(execution == 0, pooled)  # [N, T]


class SEPAController:
    """Schedules SEPA's lambda: linear ramp or variance-driven auto, behind a sticky correct-rate gate."""

    def __init__(self, schedule: str = "linear", steps: int = 500, delay_steps: int = 50,
                 correct_rate_gate: float = 0.1, ema_decay: float = 0.9, warmup: int = 10,
                 var_target: float = 0.2, where: str = "[sepa]") -> None:
        if schedule not in ("linear", "auto"):
            raise ConfigError(f'{where} schedule = "{schedule}": must be linear or auto.')
        for key, value in (("steps", steps), ("delay_steps", delay_steps)):
            if value < 0:
                raise ConfigError(f"{where} {key} = {value}: must be >= 0.")
        if not 0.0 <= correct_rate_gate <= 1.0:
            raise ConfigError(f"{where} correct_rate_gate = {correct_rate_gate}: must be in [0, 1].")
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"{where} ema_decay = {ema_decay}: must be in [0, 1).")
        if warmup < 1:
            raise ConfigError(f"{where} warmup = {warmup}: must be >= 1.")
        if not 0.0 <= var_target < 1.0:
            raise ConfigError(f"{where} var_target = {var_target}: must be in [0, 1).")
        self.schedule, self.steps, self.delay_steps = schedule, steps, delay_steps
        self.correct_rate_gate, self.ema_decay, self.warmup, self.var_target = (
            correct_rate_gate, ema_decay, warmup, var_target)
        self.gate_open = correct_rate_gate <= 0.0
        self.var_ema: float | None = None
        self.var_ref: float | None = None
        self.observed = 0

    # -- observations ---------------------------------------------------------------------------
    def observe_correct_rate(self, rate: float) -> None:
        """Open the gate (for good) once the batch correct rate reaches ``correct_rate_gate``."""
        if not self.gate_open and math.isfinite(rate) and rate >= self.correct_rate_gate:
            self.gate_open = True

    def observe_execution_variance(self, variance: float) -> None:
        """Feed the auto schedule the variance of this batch's execution-token uncertainty."""
        if not math.isfinite(variance):
            return
        d = self.ema_decay
        self.var_ema = variance if self.var_ema is None else d * self.var_ema + (1.0 - d) * variance
        self.observed += 1
        if self.var_ref is None and self.observed >= self.warmup:
            self.var_ref = self.var_ema

    # -- lambda ---------------------------------------------------------------------------------
    def linear_lambda(self, step: int) -> float:
        shifted = step - self.delay_steps
        if shifted <= 0:
            return 0.0
        return 1.0 if self.steps == 0 else min(1.0, shifted / self.steps)

    def auto_lambda(self) -> float:
        if self.var_ema is None or not self.var_ref:  # no reference yet (or a zero-variance one)
            return 0.0
        ratio = self.var_ema / self.var_ref
        return min(1.0, max(0.0, (1.0 - ratio) / (1.0 - self.var_target)))

    def lambda_at(self, step: int) -> float:
        """Lambda for ``step`` given what has been observed so far."""
        if not self.gate_open:
            return 0.0
        linear = self.linear_lambda(step)
        return max(linear, self.auto_lambda()) if self.schedule == "auto" else linear

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"gate_open": self.gate_open, "var_ema": self.var_ema, "var_ref": self.var_ref,
                "observed": self.observed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gate_open = bool(state["gate_open"])
        self.var_ema = None if state.get("var_ema") is None else float(state["var_ema"])
        self.var_ref = None if state.get("var_ref") is None else float(state["var_ref"])
        self.observed = int(state.get("observed", 0))
