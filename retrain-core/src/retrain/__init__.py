"""retrain: RL from verifiable rewards for LLM reasoning models, where every stage is a plugin.

Importing this package is cheap (no torch): the CLI and plugin listing stay fast.
"""

from retrain.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
