"""Campaigns (conditions x seeds as isolated runs), their status, summary and plots.

``run_campaign`` is imported lazily so that ``import retrain.campaign`` stays light.
"""

from __future__ import annotations

from typing import Any


def run_campaign(config_path: Any, overrides: Any = None) -> int:
    """Run or resume the campaign described by ``config_path`` (see retrain.campaign.runner)."""
    from retrain.campaign.runner import run_campaign as _run

    return _run(config_path, overrides)


__all__ = ["run_campaign"]
