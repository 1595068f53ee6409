"""Helpers for tests (retrain's own and plugin authors'): tiny local models, toy runs and their
metrics, contexts and rollouts, contract suites, and installs into temporary folders.

Nothing here downloads anything or installs into the running environment.
"""

from retrain.testing.models import CHATML_TEMPLATE, tiny_model_dir, tiny_tokenizer
from retrain.testing.runs import TOY_RUN, read_jsonl, read_metrics, read_samples, toy_config, write_toy_config

__all__ = ["CHATML_TEMPLATE", "TOY_RUN", "read_jsonl", "read_metrics", "read_samples", "tiny_model_dir",
           "tiny_tokenizer", "toy_config", "write_toy_config"]
