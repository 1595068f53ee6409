"""retrain-verifiers: train with retrain on verifiers (0.4.x, ``verifiers.v1``) environments.

This package doubles as a verifiers *harness* package: verifiers resolves the harness id
``retrain_verifiers`` by importing this module and taking the one ``Harness`` subclass in
``__all__`` (``RetrainChatHarness``: an in-process chat loop, see ``harness.py``). The export is
lazy so that importing the retrain plugin (``retrain plugins list``) never imports verifiers.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["RetrainChatHarness"]

#: The verifiers harness id under which ``RetrainChatHarness`` is found.
HARNESS_ID = "retrain_verifiers"


def __getattr__(name: str) -> Any:
    if name == "RetrainChatHarness":
        from retrain_verifiers.harness import RetrainChatHarness

        return RetrainChatHarness
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
