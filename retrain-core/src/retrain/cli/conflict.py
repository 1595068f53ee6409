"""The other ``retrain`` on PyPI: an older, unrelated project that ships the same ``retrain``
import package and ``retrain`` command. Installed next to retrain-core, each overwrites the
other's files, so the CLI refuses to start and says what to uninstall."""

from __future__ import annotations

import importlib.metadata as md


def conflicting_distribution() -> str:
    """'' when no distribution named ``retrain`` is installed, else the one-line message."""
    try:
        dist = md.distribution("retrain")  # a metadata lookup only: no import, a few ms
    except md.PackageNotFoundError:
        return ""
    return (f'the PyPI package "retrain" {dist.version} (a different, older project) is installed here and '
            "overwrites retrain-core's `retrain` package and command: run `pip uninstall -y retrain`, then "
            "`pip install --force-reinstall --no-deps retrain-core` to restore retrain-core's files.")
