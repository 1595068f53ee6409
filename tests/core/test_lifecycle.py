"""The lifecycle facade (retrain.lifecycle.RunHooks) over a real plugin manager with in-process plugins:
the merge rule of extra metrics, stop reasons, read-only arguments, errors that name the hook."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from retrain import hookimpl
from retrain.errors import PluginError
from retrain.lifecycle import RunHooks
from retrain.plugins import load_plugins

CTX = object()  # the hooks only pass ctx through


def plugin(name: str, **hooks) -> tuple[str, types.ModuleType]:
    module = types.ModuleType(f"lifecycle_fixture_{name}")
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return name, module


def hooks_of(*plugins) -> RunHooks:
    return RunHooks(load_plugins(entry_points=False, strict=True, extra=plugins).pm.hook)


def test_extra_metrics_of_every_plugin_are_merged_and_last_step_is_tracked():
    hooks = hooks_of(plugin("a", retrain_after_step=lambda ctx, step, metrics: {"a/x2": 2 * metrics["reward/mean"]}),
                     plugin("b", retrain_after_step=lambda step: {"b/step": float(step)}),  # a subset of the arguments
                     plugin("c", retrain_after_step=lambda metrics: None))
    hooks.start_run(CTX, 4)
    assert hooks.last_step == 4
    assert hooks.after_step(CTX, 5, {"reward/mean": 0.25}) == {"a/x2": 0.5, "b/step": 5.0}
    assert hooks.last_step == 5


def test_a_plugin_cannot_replace_a_metric():
    hooks = hooks_of(plugin("a", retrain_after_step=lambda metrics: {"reward/mean": 1.0}))
    with pytest.raises(PluginError, match=r"retrain_after_step returned metric 'reward/mean' after step 3, which the "
                                          r"step already has \(plugins: a\)"):
        hooks.after_step(CTX, 3, {"reward/mean": 0.25})
    twice = hooks_of(plugin("a", retrain_after_step=lambda step: {"x": 1.0}),
                     plugin("b", retrain_after_step=lambda step: {"x": 2.0}))
    with pytest.raises(PluginError, match="metric 'x'"):
        twice.after_step(CTX, 1, {})


def test_metrics_reach_plugins_read_only():
    def mutate(metrics):
        metrics["reward/mean"] = 9.0

    hooks = hooks_of(plugin("a", retrain_after_eval=mutate))
    with pytest.raises(PluginError, match=r"retrain_after_eval \(plugins: a\) failed after the evaluation of step 2: "
                                          "TypeError: 'mappingproxy' object does not support item assignment"):
        hooks.after_eval(CTX, 2, {"reward/mean": 0.25})


def test_every_stop_reason_is_returned():
    hooks = hooks_of(plugin("a", retrain_stop_run=lambda step: "a is done" if step >= 2 else None),
                     plugin("b", retrain_stop_run=lambda metrics: "" if metrics else None))
    assert hooks.stop_reasons(CTX, 1, {"m": 1.0}) == []
    assert hooks.stop_reasons(CTX, 2, {"m": 1.0}) == ["a is done"]


def test_checkpoint_and_end_hooks_get_every_argument(tmp_path: Path):
    seen = []
    hooks = hooks_of(plugin("a", retrain_after_save=lambda ctx, step, path: seen.append(("save", ctx, step, path)),
                            retrain_after_load=lambda ctx, step, path: seen.append(("load", ctx, step, path)),
                            retrain_end_run=lambda ctx, last_step, status: seen.append(("end", ctx, last_step, status))))
    hooks.after_load(CTX, 2, str(tmp_path))
    hooks.after_save(CTX, 4, tmp_path)
    hooks.end_run(CTX, "failed")
    assert seen == [("load", CTX, 2, tmp_path), ("save", CTX, 4, tmp_path), ("end", CTX, 0, "failed")]


def test_no_lifecycle_plugin_costs_nothing():
    hooks = hooks_of()
    assert hooks.after_step(CTX, 1, {"reward/mean": 0.0}) == {}
    assert hooks.stop_reasons(CTX, 1, {}) == []
