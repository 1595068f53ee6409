"""retrain-rloo: an example third-party advantage plugin (RLOO)."""
