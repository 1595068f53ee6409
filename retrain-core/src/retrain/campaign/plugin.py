"""Built-in commands of the campaign area: ``retrain squeeze``, ``retrain campaign``, ``retrain plot``."""

from __future__ import annotations

from retrain import hookimpl


def _squeeze():  # type: ignore[no-untyped-def]
    """LoRA-Squeeze: exact rank analysis and compression of a LoRA adapter."""
    from retrain.campaign.cli import squeeze_app

    return squeeze_app()


def _campaign():  # type: ignore[no-untyped-def]
    """Campaign status and summary tables (conditions x seeds)."""
    from retrain.campaign.cli import campaign_app

    return campaign_app()


def _plot():  # type: ignore[no-untyped-def]
    """PNG plots of reward and eval accuracy for a run or a campaign."""
    from retrain.campaign.cli import plot_app

    return plot_app()


@hookimpl
def retrain_register_commands(register):  # type: ignore[no-untyped-def]
    register("squeeze", _squeeze)
    register("campaign", _campaign)
    register("plot", _plot)
