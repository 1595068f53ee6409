"""The local Tinker-compatible stand-in service (`retrain tinker serve`)."""
