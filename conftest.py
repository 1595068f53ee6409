"""Shared test setup: few threads (CI has 2 cores), no network, offline wandb/HF."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


def pytest_configure(config):
    try:
        import torch
    except ImportError:  # core-only environments
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A random-init tiny Llama + char tokenizer folder, built once per session."""
    from retrain.testing import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_gqa_model(tmp_path_factory):
    """The tiny Llama with grouped-query attention (4 query heads, 2 key/value heads) and a tied
    output layer, as SmolLM2; built once per session."""
    from retrain.testing import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("tiny_gqa_model"), kv_heads=2, tied=True)
