"""User-facing errors: one line that says what, where, why and what to do."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class RetrainError(Exception):
    """An error caused by user input (config, CLI, files). The CLI prints it as one line."""


class ConfigError(RetrainError):
    """A bad configuration value, key, section or file."""


class NumericsError(RetrainError):
    """Numbers that cannot be right (non-finite loss, advantages against the rewards, an engine
    whose logprobs disagree with the trainer's): the run stops with one line naming step and quantity."""


class PluginError(RetrainError):
    """A plugin or component that cannot be loaded or selected."""


#: Exit status of a command that ran out of accelerator memory (a campaign retries such a run with fewer beside it).
EXIT_OUT_OF_MEMORY = 3


def out_of_memory_line(error: BaseException) -> str | None:
    """The CLI's last line for an accelerator out-of-memory error (``torch.OutOfMemoryError``, or a CUDA
    ``AcceleratorError`` saying "out of memory"), else None: what ran out and what to lower."""
    torch = sys.modules.get("torch")
    oom = torch is not None and isinstance(error, getattr(torch, "OutOfMemoryError", ()))
    if not oom and not (type(error).__name__ == "AcceleratorError" and "out of memory" in str(error)):
        return None
    what = " ".join(". ".join(str(error).split(". ")[:2]).split()).rstrip(".")  # "CUDA out of memory. Tried to ..."
    return (f"error: out of accelerator memory ({what}). Lower [backend] micro_batch_size, [eval] batch_size or "
            "[training] batch_size x group_size x max_tokens; on a shared GPU, run fewer jobs at once "
            "([campaign] max_workers).")


@contextmanager
def in_config(source: str) -> Iterator[None]:
    """A :class:`ConfigError` raised inside that names a section but not the file (``[data] path =
    ...``, as components write them) gets the config file in front, as the config's own checks do."""
    try:
        yield
    except ConfigError as e:
        if source and str(e).startswith("["):
            raise ConfigError(f"{source} {e}") from e
        raise


def did_you_mean(word: str, choices: Iterable[str], prefix: str = " Did you mean ") -> str:
    """Return ' Did you mean "x"?' for the closest choice, or '' when nothing is close."""
    choices = list(choices)
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not match:
        lowered = {c.lower(): c for c in choices}
        match = [lowered[word.lower()]] if word.lower() in lowered else []
    return f'{prefix}"{match[0]}"?' if match else ""
