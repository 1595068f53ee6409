"""GRPO step benchmark against TRL on one GPU (same as `retrain bench`); see docs/performance.md.

    python benchmarks/bench_grpo.py --steps 4 --plain --peer benchmarks/peers/trl_grpo_peer.py --json out.json
"""

import sys

from retrain.bench.grpo import main

if __name__ == "__main__":
    main(sys.argv[1:])
