"""retrain-tinker: train on the Tinker service through the official ``tinker`` SDK (see docs/tinker.md)."""
