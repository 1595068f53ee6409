"""User-facing errors: one line that says what, where, why and what to do."""

from __future__ import annotations

import difflib
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
