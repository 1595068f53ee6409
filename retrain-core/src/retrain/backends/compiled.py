"""``[backend] compile``: the trained decoder's forward and backward through ``torch.compile``
(docs/training.md, "Compiling the trainer"; the measurements behind the default: docs/performance.md).

* **When** (:func:`wants_compile`): ``true`` / ``false`` as written; ``"auto"`` (the default) does not
  compile, on any device. An earlier form (the decoder compiled in place, static shapes) saved 0.38 s
  per step on an H200 for ~88 s of compilation. On an H100 the whole decoder with dynamic shapes
  did not finish compiling its first step within 3-4 minutes; layer by layer, 8 of 24 layers
  compiled in 65 s bought 1%, and all 24 took more than 200 s (docs/performance.md). No usual run
  length pays that back, so "auto" stays off. On a CPU it never paid (docs/performance.md).
* **What**: ``torch.compile(layer._call_impl, dynamic=True)`` of each layer of the causal LM's
  decoder (:class:`RegionalDecoder`; a decoder without a ``layers`` list is compiled whole). The
  embedding, the final norm and the chunked log-softmax over the LM head stay eager. Layer by
  layer compiles much faster than the whole decoder, since inductor's cache serves the repeated
  layers' graphs. Dynamic shapes, as the fast decode path does: batch and sequence lengths change
  every step and compile once, not per shape.
  The model itself is untouched (no ``OptimizedModule`` stored in the backend, each compiled layer
  call swapped in only during the call): the compiled callables share the module's parameters, so state dicts and
  checkpoints have no ``_orig_mod.`` prefix, peft's adapter save/load and the engine's weight sync
  see the real parameters, and only ``train_step``'s policy forward runs compiled (evaluation,
  the engine, entropy and reference forwards stay eager: each would be one more compilation).
* **Compile time**: dynamo's own timer (frames traced + forward and backward graphs compiled),
  read around each step; reported once as a console line and as the ``train/compile_s`` metric of
  the steps that compiled.
* **Failure**: an error raised by the compiler (or by compiled code) costs one ``warning:`` line;
  the step is redone eagerly from the same state (gradients cleared, RNG restored) and the run
  goes on uncompiled. Out-of-memory and retrain's own errors are not compile failures; an error
  of the model's own code inside the compiled region is, and the eager rerun raises it again.

``RETRAIN_COMPILE_BACKEND`` names the ``torch.compile`` backend (default ``inductor``): an internal
hook for tests, which use the cheaper ``aot_eager`` on CPU.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: Where a traceback frame means "inside the compiler or compiled code" (forward or the lazily
#: compiled backward).
_COMPILER_PATHS = ("/torch/_dynamo/", "/torch/_inductor/", "/torch/_functorch/")


def wants_compile(setting: bool | str, device: str, max_steps: int, distributed: bool) -> bool:
    """Whether ``[backend] compile = setting`` compiles this run (see the module docstring)."""
    if setting == "auto":  # off everywhere until compiling is shown to pay back (module docstring)
        return False
    return bool(setting)


def compiler_seconds() -> float:
    """Seconds dynamo has spent compiling in this process so far (forward frames + backward graphs)."""
    try:
        from torch._dynamo.utils import calculate_time_spent
    except ImportError:  # a torch without the timer: compile time reads as 0
        return 0.0
    return float(calculate_time_spent().get("total_wall_time", 0.0))


def is_compile_failure(error: BaseException) -> bool:
    """An exception raised by the compiler or by compiled code, not by the model or by retrain."""
    import torch

    from retrain.errors import RetrainError

    if isinstance(error, (torch.OutOfMemoryError, RetrainError)):
        return False
    if type(error).__module__.startswith(("torch._dynamo", "torch._inductor", "torch._functorch")):
        return True
    tb = error.__traceback__
    while tb is not None:
        if any(p in tb.tb_frame.f_code.co_filename.replace("\\", "/") for p in _COMPILER_PATHS):
            return True
        tb = tb.tb_next
    return False


def one_line(error: BaseException, limit: int = 240) -> str:
    """``Type: first line of the message`` (compiler errors run to pages); a backend's failure that
    dynamo wrapped (``BackendCompilerFailed``) names the backend's own error."""
    inner = getattr(error, "inner_exception", None)
    if isinstance(inner, BaseException):
        return f"{type(error).__name__}: {one_line(inner, limit)}"
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class RegionalDecoder:
    """Stands for ``decoder`` (same parameters, same call) with each of its layers' calls compiled.

    A compiled layer call is swapped into ``layer._compiled_call_impl`` (what ``Module.compile()``
    sets) only for the duration of a call, so every other forward of the model stays eager.
    """

    def __init__(self, decoder: Any, backend: str) -> None:
        import torch
        import torch._dynamo.config as dynamo_config

        self._orig_mod = decoder  # read as torch.compile's wrapper is (logprobs.cache_argument)
        # The layers share one forward code object, and dynamo keeps at most recompile_limit graphs per
        # code object (8), running the rest eagerly: a graph per layer (guards on its index, e.g. the
        # KV cache's), some twice (input with or without grad).
        limit = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
        setattr(dynamo_config, limit, max(getattr(dynamo_config, limit), 3 * len(decoder.layers)))
        self.calls = [torch.compile(layer._call_impl, backend=backend, dynamic=True) for layer in decoder.layers]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        layers = self._orig_mod.layers
        for layer, call in zip(layers, self.calls, strict=True):
            layer._compiled_call_impl = call
        try:
            return self._orig_mod(*args, **kwargs)
        finally:
            for layer in layers:
                layer._compiled_call_impl = None


class CompiledDecoder:
    """The trained decoder compiled once for every shape; falls back to eager on a compiler error."""

    def __init__(self, decoder: Any) -> None:
        import torch

        self.backend = os.environ.get("RETRAIN_COMPILE_BACKEND", "inductor")
        layers = getattr(decoder, "layers", None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) > 0:
            self.decoder: Any = RegionalDecoder(decoder, self.backend)
            self.form = "each decoder layer"
        else:  # no layer list to compile one by one: the whole decoder
            self.decoder = torch.compile(decoder, backend=self.backend, dynamic=True)  # shares decoder's parameters
            self.form = "the whole decoder"
        self.failed = False
        self.reported = False
        self.total_seconds = 0.0

    @property
    def active(self) -> bool:
        return not self.failed

    def run_step(self, step: Any) -> dict[str, float]:
        """``step(decoder)`` with the compiled decoder; on a compile failure, one warning line and
        ``step(None)`` (eager) from the same state. Adds ``train/compile_s`` when this step compiled."""
        import torch

        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        before = compiler_seconds()
        try:
            metrics = step(self.decoder)
        except Exception as e:
            if not is_compile_failure(e):
                raise
            self.fail(e)
            torch.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            return step(None)
        seconds = compiler_seconds() - before
        if seconds > 0:
            self.total_seconds += seconds
            metrics["train/compile_s"] = seconds
            if not self.reported:
                self.reported = True
                print(f"compile: the trained decoder compiled in {seconds:.1f} s (torch.compile of {self.form}, "
                      f"backend {self.backend}, dynamic shapes; paid once, later steps reuse it)", file=sys.stderr,
                      flush=True)
        return metrics

    def fail(self, error: BaseException) -> None:
        self.failed = True
        print(f"warning: [backend] compile: torch.compile of the trained decoder failed ({one_line(error)}); "
              "training goes on uncompiled (set [backend] compile = false to skip the attempt)",
              file=sys.stderr, flush=True)
