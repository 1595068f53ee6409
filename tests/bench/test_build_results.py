"""benchmarks/ablation/build_results.py: docs/results.md's tables from run folders, with step 0 from the
base model's evaluation when the runs skipped their own (the GPU script's eval.at_start = false)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ablation" / "build_results.py"
FINALS = {"grpo": [0.30, 0.35, 0.40, 0.35], "maxrl": [0.40, 0.45, 0.45, 0.50]}


def _script():
    spec = importlib.util.spec_from_file_location("build_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _campaign(root: Path, own_step0: bool) -> Path:
    runs = {}
    for cond, finals in FINALS.items():
        for seed, final in enumerate(finals, start=1):
            run_dir = root / "runs" / f"{cond}-s{seed}"
            run_dir.mkdir(parents=True)
            rows = [{"step": 0, "eval/pass@1": 0.05}] if own_step0 else []
            late = {"entropy/mean": 0.5, "adv/zero_frac": 0.25, "completion/length_mean": 40.0}
            rows += [{"step": 1, "reward/mean": 0.1, **late}, {"step": 2, "reward/mean": final, "eval/pass@1": final, **late}]
            (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            runs[run_dir.name] = {"condition": cond, "seed": seed, "run_dir": str(run_dir), "max_steps": 2,
                                  "status": "done"}
    (root / "manifest.json").write_text(json.dumps({"runs": runs}))
    return root


def _row(table: str, cond: str) -> list[str]:
    return next(line for line in table.splitlines() if line.startswith(f"| {cond} |")).strip("| ").split(" | ")


def test_base_evaluation_is_every_run_s_before(tmp_path):
    text = _script().build(_campaign(tmp_path / "camp", own_step0=False), tmp_path / "out", [],
                           base={"eval/pass@1": 0.10})
    # grpo: before 10.0 (the base), after mean 35.0; gains .20 .25 .30 .25 -> +25.0
    cond, seeds, before, after, gain = _row(text, "grpo")
    assert (seeds, before) == ("4", "10.0") and after.startswith("35.0 [") and gain.startswith("+25.0 [")
    # maxrl - grpo by seed: .10 .10 .05 .15 -> +10.0 [3.5, 16.5], excludes 0 (hand-computed in test_summary.py)
    paired = next(line for line in text.splitlines() if line.startswith("| maxrl | eval/pass@1 |"))
    assert paired == "| maxrl | eval/pass@1 | 4 | +10.0 | [3.5, 16.5] | excludes 0 |"


def test_a_run_s_own_step_0_wins_over_the_base_evaluation(tmp_path):
    text = _script().build(_campaign(tmp_path / "camp", own_step0=True), tmp_path / "out", [],
                           base={"eval/pass@1": 0.10})
    assert _row(text, "maxrl")[2] == "5.0" and _row(text, "maxrl")[4].startswith("+40.0 [")


def test_without_any_step_0_the_before_column_says_so(tmp_path):
    text = _script().build(_campaign(tmp_path / "camp", own_step0=False), tmp_path / "out", [])
    assert _row(text, "grpo")[2] == "-" and _row(text, "grpo")[4] == "-"
    with pytest.raises(StopIteration):
        _row(text, "nothing")


def test_late_training_metrics_are_averaged_per_run_and_paired_by_seed(tmp_path):
    text = _script().build(_campaign(tmp_path / "camp", own_step0=False), tmp_path / "out", [])
    # last-10-step reward = (0.1 + final) / 2: grpo .20 .225 .25 .225, maxrl .25 .275 .275 .30;
    # maxrl - grpo: .05 .05 .025 .075, mean .05, std .0204, t(.975, 3) = 3.182 -> [1.8, 8.2]
    late = [line for line in text.splitlines() if line.startswith("| maxrl | ") and "%" in line]
    cond, reward, vs, entropy, vs_entropy, zero, tokens = late[0].strip("| ").split(" | ")
    assert reward.startswith("27.5 [") and vs == "+5.0 [1.8, 8.2] (excludes 0)"
    assert (entropy.split()[0], zero, tokens) == ("0.500", "25%", "40.0")
