"""Fixtures of the reliability suite."""

from __future__ import annotations

import pytest
from retrain.testing.runs import write_toy_config


@pytest.fixture(scope="session")
def trained_run(tiny_model, tmp_path_factory):
    """A finished 1-step run with a checkpoint (built once; tests copy it before changing it)."""
    from retrain.config import load_config
    from retrain.plugins import load_plugins
    from retrain.train.runner import train

    root = tmp_path_factory.mktemp("trained")
    cfg = write_toy_config(root / "run.toml", tiny_model, root / "runs", training={"save_every": 1})
    run_dir = train(load_config(cfg), load_plugins(), config_path=cfg)
    return cfg, run_dir
