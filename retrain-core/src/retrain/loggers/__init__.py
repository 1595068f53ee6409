"""Metric loggers (kind ``logger``): ``log(step, metrics)`` and ``close()``."""
