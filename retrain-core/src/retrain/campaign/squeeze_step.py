"""The campaign's automatic LoRA-Squeeze: analyse the first finished run's adapter."""

from __future__ import annotations

import json
from pathlib import Path

from retrain.campaign.rundir import find_adapter


def squeeze_run(run_dir: str | Path, out_dir: str | Path, energy: float, compress: bool) -> str:
    """Write ``report.json`` and ``report.txt`` (and ``adapter_r<k>/`` when ``compress``) to
    ``out_dir``; return the text report."""
    from retrain.squeeze import analyze, format_report
    from retrain.squeeze import compress as compress_adapter

    out_dir = Path(out_dir)
    adapter = find_adapter(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if adapter is None:
        text = f"squeeze: no adapter_config.json under {run_dir}; nothing to analyse"
        (out_dir / "report.txt").write_text(text + "\n")
        return text
    report = analyze(adapter, energy)
    if compress:
        report = compress_adapter(adapter, out_dir / f"adapter_r{report.recommended_rank}", energy=energy)
    text = f"squeeze (first finished run {Path(run_dir).name}):\n" + format_report(report)
    (out_dir / "report.json").write_text(json.dumps(report.to_json(), indent=2))
    (out_dir / "report.txt").write_text(text + "\n")
    return text
