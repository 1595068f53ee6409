"""Helpers for plugin authors' tests: tiny local models and component contract suites.

Nothing here downloads anything.
"""

from retrain.testing.models import CHATML_TEMPLATE, tiny_model_dir, tiny_tokenizer

__all__ = ["CHATML_TEMPLATE", "tiny_model_dir", "tiny_tokenizer"]
