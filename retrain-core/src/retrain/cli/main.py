"""Entry point of the ``retrain`` console script (being built under issue 2)."""

from __future__ import annotations

import sys


def main() -> None:
    print("retrain: CLI under construction", file=sys.stderr)
    sys.exit(2)
