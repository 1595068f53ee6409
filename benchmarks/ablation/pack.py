"""Pack a campaign folder's raw results into OUT/ablation-runs.tar.gz (run on the GPU machine).

Kept: manifest.json, summary.*, every run's config.toml, metrics.jsonl, plugins.json and eval
reports (without the pass@k samples' text, which would not fit the 16 MiB a file may bring back:
each problem keeps its greedy completion, correctness and per-sample rewards), and each run's log.
Left out: checkpoints and adapters.

    python benchmarks/ablation/pack.py CAMPAIGN_DIR OUT_DIR
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

KEEP = ("config.toml", "metrics.jsonl", "plugins.json")


def slim_report(path: Path) -> bytes:
    report = json.loads(path.read_text())
    for problem in report.get("problems", []):
        for sample in problem.get("samples", []):
            sample.pop("completion", None)
    return json.dumps(report).encode()


def pack(campaign: Path, out: Path) -> Path:
    target = out / "ablation-runs.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        def add_bytes(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for name in ("manifest.json", "summary.json", "summary.md"):
            if (campaign / name).is_file():
                tar.add(campaign / name, arcname=f"ablation/{name}")
        for log in sorted((campaign / "logs").glob("*.log")):
            add_bytes(f"ablation/logs/{log.name}", log.read_bytes()[-200_000:])  # the tail of long logs
        for run in sorted(p for p in (campaign / "runs").iterdir() if p.is_dir()):
            for name in KEEP:
                if (run / name).is_file():
                    tar.add(run / name, arcname=f"ablation/runs/{run.name}/{name}")
            for report in sorted((run / "eval").glob("step_*.json")):
                add_bytes(f"ablation/runs/{run.name}/eval/{report.name}", slim_report(report))
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")
    return target


if __name__ == "__main__":
    pack(Path(sys.argv[1]), Path(sys.argv[2]))
