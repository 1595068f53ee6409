"""Benchmarks (``retrain bench``): the GRPO step against TRL on one GPU (see docs/performance.md)."""
