"""Status, summary and plots read from synthetic run directories (metrics.jsonl as the loop writes it)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from retrain.campaign.rundir import read_metrics, training_steps
from retrain.campaign.summary import format_summary, status_rows, summarize, write_summary

REWARDS = {"a-s1": [0.1, 0.5, 0.3], "a-s2": [0.2, 0.4, 0.5], "b-s1": [0.0, 0.0, 0.6], "b-s2": [0.1, 0.2]}
EVALS = {"a-s1": (0.2, 0.4), "a-s2": (0.1, 0.5), "b-s1": (0.0, 0.7), "b-s2": (0.1, None)}


def _write_run(run_dir: Path, rewards: list[float], evals: tuple[float, float | None], torn: bool = False) -> None:
    run_dir.mkdir(parents=True)
    lines = [{"step": 0, "eval/pass@1": evals[0]}]
    for i, r in enumerate(rewards, start=1):
        lines.append({"step": i, "reward/mean": r, "loss/clip_frac": 0.0, "time/step": 0.1})
    if evals[1] is not None:
        lines.append({"step": len(rewards), "eval/pass@1": evals[1]})
    text = "".join(json.dumps(x) + "\n" for x in lines)
    (run_dir / "metrics.jsonl").write_text(text + ('{"step": 3, "reward/me' if torn else ""))


@pytest.fixture
def campaign(tmp_path):
    cdir = tmp_path / "camp"
    runs = {}
    for name, rewards in REWARDS.items():
        _write_run(cdir / "runs" / name, rewards, EVALS[name], torn=name == "b-s2")
        cond, seed = name.split("-s")
        status = "done" if len(rewards) == 3 else "running"
        runs[name] = {"condition": cond, "seed": int(seed), "run_dir": str(cdir / "runs" / name), "max_steps": 3,
                      "status": status, "pid": 2 ** 22 + 12345 if status == "running" else None}  # a dead pid
    (cdir / "manifest.json").write_text(json.dumps({"runs": runs}))
    return cdir


def test_rows_merge_by_step_and_ignore_a_torn_line(campaign):
    rows = read_metrics(campaign / "runs" / "a-s1")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert rows[3]["reward/mean"] == 0.3 and rows[3]["eval/pass@1"] == 0.4  # eval + train rows of step 3 merged
    assert training_steps(read_metrics(campaign / "runs" / "b-s2")) == 2


def test_status(campaign):
    rows = {r["run"]: r for r in status_rows(campaign)}
    assert (rows["a-s1"]["steps"], rows["a-s1"]["state"]) == (3, "done")
    # manifest says running, but the pid is gone: the campaign was killed
    assert (rows["b-s2"]["steps"], rows["b-s2"]["max_steps"], rows["b-s2"]["state"]) == (2, 3, "interrupted")


def test_a_moved_campaign_folder_still_finds_its_runs(campaign, tmp_path):
    moved = campaign.rename(tmp_path / "copied-from-the-gpu-machine")  # the manifest's absolute run paths are gone
    rows = {r["run"]: r for r in status_rows(moved)}
    assert (rows["a-s1"]["steps"], rows["a-s1"]["state"]) == (3, "done")
    assert rows["a-s1"]["run_dir"] == str(moved / "runs" / "a-s1")
    assert summarize(moved)["conditions"]["a"]["reward/mean"]["final_mean"] == pytest.approx(0.4)


def test_summary_numbers(campaign):
    s = summarize(campaign)
    assert s["metrics"] == ["reward/mean", "eval/pass@1"]
    a = s["conditions"]["a"]["reward/mean"]
    assert a["final_mean"] == pytest.approx(0.4) and a["final_std"] == pytest.approx(math.sqrt(0.02))
    assert a["best_mean"] == pytest.approx(0.5) and a["best_std"] == pytest.approx(0.0)
    e = s["conditions"]["a"]["eval/pass@1"]
    assert e["final_mean"] == pytest.approx(0.45) and e["final_std"] == pytest.approx(math.sqrt(0.005))
    b = s["conditions"]["b"]["reward/mean"]
    assert (b["final_mean"], b["best_mean"], b["n"]) == (pytest.approx(0.4), pytest.approx(0.4), 2)
    assert s["conditions"]["b"]["eval/pass@1"]["final_mean"] == pytest.approx(0.4)  # 0.7 and 0.1 (b-s2's last eval)
    text = format_summary(s)
    assert "0.4000 ± 0.1414" in text.splitlines()[1]
    write_summary(campaign)
    assert "| a | 2 | 0.4000 ± 0.1414 |" in (campaign / "summary.md").read_text()


def test_summary_without_manifest(tmp_path):
    _write_run(tmp_path / "x-s1", [0.1, 0.3], (0.0, 0.2))
    _write_run(tmp_path / "x-s2", [0.2, 0.2], (0.0, 0.4))
    s = summarize(tmp_path)
    assert s["conditions"]["x"]["reward/mean"]["final_mean"] == pytest.approx(0.25)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from retrain.cli.main import main; main()", *args],
                          capture_output=True, text=True, env=dict(os.environ, MPLBACKEND="Agg"), timeout=120)


def test_cli_status_summary_plot(campaign, tmp_path):
    out = _cli("campaign", "status", str(campaign))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["condition", "seed", "steps", "state"]
    assert lines[1].split() == ["a", "1", "3/3", "done"]
    assert lines[-1] == "3 done, 1 interrupted"
    out = _cli("campaign", "summary", str(campaign), "--json")
    assert json.loads(out.stdout)["conditions"]["a"]["reward/mean"]["n"] == 2
    out = _cli("plot", str(campaign))
    assert out.returncode == 0, out.stderr
    for name in ("reward.png", "eval.png"):
        png = campaign / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    out = _cli("plot", str(campaign / "runs" / "a-s1"), "--out", str(tmp_path / "p"))
    assert out.returncode == 0 and (tmp_path / "p" / "reward.png").is_file()
    out = _cli("plot", str(tmp_path / "nothing"))
    assert out.returncode == 2 and out.stderr.startswith("error: ") and len(out.stderr.splitlines()) == 1


# Final held-out accuracy of 4 seeds per condition, for the hand-computed statistics below.
FINALS = {"grpo": [0.30, 0.35, 0.40, 0.35], "maxrl": [0.40, 0.45, 0.45, 0.50], "noisy": [0.20, 0.45, 0.50, 0.35]}


@pytest.fixture
def four_seeds(tmp_path):
    for cond, finals in FINALS.items():
        for seed, final in enumerate(finals, start=1):
            _write_run(tmp_path / f"{cond}-s{seed}", [0.1, 0.2], (0.1, final))
    _write_run(tmp_path / "noisy-s9", [0.1, 0.2], (0.1, 0.9))  # no grpo seed 9: left out of the pairing
    return tmp_path


def test_intervals_and_paired_differences_by_hand(four_seeds):
    s = summarize(four_seeds, ["eval/pass@1"])
    assert s["baseline"] == "grpo"  # the first condition
    # grpo: mean 0.35; squared deviations .0025 + 0 + .0025 + 0 = .005, /3 -> std 0.0408248;
    # t(0.975, 3) = 3.182446 (textbook table 3.182); half width 3.182446 * 0.0408248 / 2 = 0.0649614
    g = s["conditions"]["grpo"]["eval/pass@1"]
    assert (g["final_mean"], g["final_std"], g["n"]) == (pytest.approx(0.35), pytest.approx(0.0408248, abs=1e-7), 4)
    assert g["final_ci95"] == pytest.approx([0.35 - 0.0649614, 0.35 + 0.0649614], abs=1e-6)
    # maxrl - grpo by seed: .10 .10 .05 .15 -> mean 0.10, the same std and half width: [0.0350386, 0.1649614]
    d = s["paired"]["maxrl"]["eval/pass@1"]
    assert d["seeds"] == [1, 2, 3, 4] and d["differences"] == pytest.approx([0.10, 0.10, 0.05, 0.15])
    assert d["ci95"] == pytest.approx([0.0350386, 0.1649614], abs=1e-6) and d["includes_zero"] is False
    # noisy - grpo: -.10 .10 .10 0 -> mean 0.025; squared deviations .015625 .005625 .005625 .000625
    # = .0275, /3 -> std 0.0957427; half width 3.182446 * 0.0957427 / 2 = 0.152348 -> [-0.127348, 0.177348]
    d = s["paired"]["noisy"]["eval/pass@1"]
    assert d["n"] == 4 and d["std"] == pytest.approx(0.0957427, abs=1e-7)
    assert d["ci95"] == pytest.approx([-0.127348, 0.177348], abs=1e-6) and d["includes_zero"] is True
    # noisy alone has 5 seeds (seed 9 too): mean (1.5 + 0.9) / 5 = 0.48
    assert s["conditions"]["noisy"]["eval/pass@1"]["n"] == 5
    assert s["conditions"]["noisy"]["eval/pass@1"]["final_mean"] == pytest.approx(0.48)
    text = format_summary(s)
    assert "final value minus grpo's, paired by seed:" in text
    paired = {line.split()[0]: line for line in text.split("paired by seed:")[1].splitlines()[2:]}
    assert paired["noisy"].endswith("[-0.1273, 0.1773]  includes 0")
    assert paired["maxrl"].endswith("+0.1000 ± 0.0408  [0.0350, 0.1650]")


def test_baseline_option_and_single_seed(four_seeds, tmp_path):
    s = summarize(four_seeds, ["eval/pass@1"], baseline="maxrl")
    assert set(s["paired"]) == {"grpo", "noisy"}
    assert s["paired"]["grpo"]["eval/pass@1"]["mean"] == pytest.approx(-0.10)
    _write_run(tmp_path / "one" / "x-s1", [0.1], (0.0, 0.5))
    one = summarize(tmp_path / "one")["conditions"]["x"]["eval/pass@1"]
    assert one["final_ci95"] is None and "[n<2]" in format_summary(summarize(tmp_path / "one"))


def test_cli_baseline(four_seeds):
    out = _cli("campaign", "summary", str(four_seeds), "--metric", "eval/pass@1", "--baseline", "maxrl", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["paired"]["noisy"]["eval/pass@1"]["mean"] == pytest.approx(-0.075)
    out = _cli("campaign", "summary", str(four_seeds), "--baseline", "maxrll")
    assert out.returncode == 2
    assert out.stderr == (f'error: {four_seeds}: --baseline maxrll: no such condition (conditions: grpo, maxrl, noisy). '
                          'Did you mean "maxrl"?\n')


def test_t_quantile_matches_the_textbook_table():
    from retrain.campaign.stats import t_quantile

    # Student-t 0.975 quantiles as printed in every table (3 decimals), and the normal limit 1.960
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 30: 2.042, 1000: 1.962}
    for df, t in table.items():
        assert t_quantile(0.975, df) == pytest.approx(t, abs=5e-4), df
    assert t_quantile(0.025, 4) == pytest.approx(-2.776, abs=5e-4)
