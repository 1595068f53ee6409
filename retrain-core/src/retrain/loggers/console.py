"""``console`` logger: a live progress line on a terminal, one plain line per step otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_line(step: int, max_steps: int, metrics: dict[str, Any], eta_s: float | None) -> str:
    parts = [f"step {step}/{max_steps}"]
    if "reward/mean" in metrics:
        parts.append(f"reward {metrics['reward/mean']:.3f}")
    if "reward/pass_rate" in metrics:
        parts.append(f"acc {metrics['reward/pass_rate']:.1%}")
    if "throughput/gen_tok_per_s" in metrics:
        parts.append(f"{metrics['throughput/gen_tok_per_s']:.0f} tok/s")
    if "loss/policy" in metrics:
        parts.append(f"loss {metrics['loss/policy']:+.4f}")
    if "time/step" in metrics:
        parts.append(f"{metrics['time/step']:.2f} s/step")
    evals = [f"{k} {v:.3f}" for k, v in metrics.items() if k.startswith("eval/") and isinstance(v, (int, float))]
    parts += evals[:3]
    if eta_s is not None:
        parts.append(f"ETA {_fmt_duration(eta_s)}")
    return " | ".join(parts)


#: A step where at least this share of the rewards failed (errors + timeouts) prints a warning line.
FAILING_REWARD_FRACTION = 0.05


def failing_reward_warning(step: int, metrics: dict[str, Any], samples: int) -> str:
    """One warning line when the reward source failed on a noticeable share of the step, else ''."""
    errors, timeouts = int(metrics.get("reward/errors", 0) or 0), int(metrics.get("reward/timeouts", 0) or 0)
    failed = errors + timeouts
    if not failed or failed < FAILING_REWARD_FRACTION * samples:
        return ""
    of = f" of {samples}" if samples else ""
    return (f"warning: step {step}: {failed}{of} rewards failed and scored 0 ({errors} errors, {timeouts} timeouts); "
            "the reward source is failing (its own messages above say why), and those samples teach nothing.")


class ConsoleLogger:
    """Live progress line (step, reward, accuracy, tok/s, ETA); plain lines when not a terminal."""

    def __init__(self, ctx: Any = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.max_steps = ctx.config.training.max_steps if ctx is not None else 0
        # rewards scored per step (N = B * G): the denominator of the failing-reward warning
        self.samples = ctx.config.training.batch_size * ctx.config.training.group_size if ctx is not None else 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._t0: float | None = None
        self._first_step: int | None = None
        self._open_line = False

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        now = time.monotonic()
        if self._t0 is None or self._first_step is None:
            self._t0, self._first_step = now, step
            eta = None
        else:
            done = step - self._first_step
            eta = (now - self._t0) / done * (self.max_steps - step) if done > 0 else None
        if eta is None and "time/step" in metrics:
            eta = metrics["time/step"] * (self.max_steps - step)
        line = progress_line(step, self.max_steps, metrics, eta)
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self._open_line = True
            if step >= self.max_steps:
                self.stream.write("\n")
                self._open_line = False
        else:
            self.stream.write(line + "\n")
        warning = failing_reward_warning(step, metrics, self.samples)
        if warning:
            self.stream.write(("\n" if self._open_line else "") + warning + "\n")
            self._open_line = False
        self.stream.flush()

    def close(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False
