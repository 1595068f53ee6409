"""The one facade through which the core calls the lifecycle hooks (``retrain.hookspecs``).

Each method calls one hook through pluggy with every argument of its spec (by keyword, so an
implementation may take any subset, and parameters added later reach the plugins that want
them), hands plugins read-only views of what they must not change, and applies the documented
rule for what the hooks return:

- ``after_step``: every plugin's dict of extra metrics is merged; a key the step already has,
  or that two plugins both return, is a :class:`retrain.errors.PluginError`;
- ``stop_reasons``: every non-empty reason a plugin returns (any one stops the run).

A hook that raises stops the run with a :class:`retrain.errors.PluginError` naming the hook and
the step, chaining the plugin's exception (checkpoints and metrics already written stay).
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from retrain.errors import PluginError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from retrain.types import RunContext


class RunHooks:
    """Typed calls of the lifecycle hooks of one run (``ctx.registry.pm``'s hook relay)."""

    def __init__(self, hook_relay: Any) -> None:
        self._relay = hook_relay  # pluggy's HookRelay: one caller per hookspec
        self.last_step = 0  # the last step the hooks saw completed (end_run reports it, even on failure)

    def _call(self, name: str, where: str, **kwargs: Any) -> list[Any]:
        try:
            return list(getattr(self._relay, name)(**kwargs))
        except PluginError:
            raise
        except Exception as e:  # a plugin's bug: one line naming the hook, the original chained
            plugins = ", ".join(self.implementers(name)) or "?"
            raise PluginError(f"{name} (plugins: {plugins}) failed {where}: {type(e).__name__}: {e}") from e

    def implementers(self, name: str) -> list[str]:
        """Names of the plugins implementing hook ``name`` (for messages)."""
        return [impl.plugin_name for impl in getattr(self._relay, name).get_hookimpls()]

    def start_run(self, ctx: RunContext, start_step: int) -> None:
        self.last_step = start_step
        self._call("retrain_start_run", f"at the start of the run (step {start_step})", ctx=ctx, start_step=start_step)

    def after_step(self, ctx: RunContext, step: int, metrics: Mapping[str, float]) -> dict[str, float]:
        """The extra metrics of every plugin, merged (no key may shadow a metric the step has)."""
        results = self._call("retrain_after_step", f"after step {step}", ctx=ctx, step=step,
                             metrics=MappingProxyType(dict(metrics)))
        extra: dict[str, float] = {}
        for result in results:
            if not result:
                continue
            if not isinstance(result, dict):
                raise PluginError(f"retrain_after_step (plugins: {', '.join(self.implementers('retrain_after_step'))})"
                                  f" returned {type(result).__name__} after step {step}; expected a dict of "
                                  "extra metrics or None.")
            for key, value in result.items():
                if key in metrics or key in extra:
                    raise PluginError(f"retrain_after_step returned metric {key!r} after step {step}, which the step "
                                      f"already has (plugins: {', '.join(self.implementers('retrain_after_step'))}): "
                                      "a plugin adds metrics, it cannot replace them; prefix its keys with its name.")
                extra[key] = value
        self.last_step = step
        return extra

    def after_eval(self, ctx: RunContext, step: int, metrics: Mapping[str, float]) -> None:
        self._call("retrain_after_eval", f"after the evaluation of step {step}", ctx=ctx, step=step,
                   metrics=MappingProxyType(dict(metrics)))

    def stop_reasons(self, ctx: RunContext, step: int, metrics: Mapping[str, float]) -> list[str]:
        """Every reason a plugin gives to stop after ``step`` (empty: go on)."""
        results = self._call("retrain_stop_run", f"after step {step}", ctx=ctx, step=step,
                             metrics=MappingProxyType(dict(metrics)))
        return [str(reason) for reason in results if reason]

    def after_save(self, ctx: RunContext, step: int, path: Path) -> None:
        self._call("retrain_after_save", f"after saving step {step}", ctx=ctx, step=step, path=Path(path))

    def after_load(self, ctx: RunContext, step: int, path: Path) -> None:
        self._call("retrain_after_load", f"after loading step {step}", ctx=ctx, step=step, path=Path(path))

    def end_run(self, ctx: RunContext, status: str) -> None:
        """``last_step`` is the last step :meth:`after_step` saw (the start step when none ran)."""
        self._call("retrain_end_run", f"at the end of the run ({status})", ctx=ctx, last_step=self.last_step,
                   status=status)
