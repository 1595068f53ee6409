"""Checker agreement: retrain's ``math`` reward against math-verify on pairs.jsonl.

Both checkers see the same response (``So the final answer is $\\boxed{<answer>}$.``) and run in
reward worker processes with the same timeout. Reported: agreement overall and per category,
each side's accuracy against the label known by construction, and for every disagreement which
side matches the label. Writes results.json and results.md beside this file.

    python benchmarks/checker_agreement/build_set.py   # once: pairs.jsonl
    python benchmarks/checker_agreement/run.py         # ~1-2 min on 2 cores
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the workers import math_verify_baseline from here

TIMEOUT = 5.0
#: Categories whose label follows retrain's evaluated-answer rule rather than mathematical equality
#: (math-verify scores them 1 by design): agreement is also reported without them.
POLICY = ("question-copy", "unreduced-fraction")


def main() -> None:
    from retrain.rewards.basic import MathReward
    from retrain.rewards.pool import WorkerPool

    rows = [json.loads(line) for line in (HERE / "pairs.jsonl").read_text().splitlines()]
    responses = [f"So the final answer is $\\boxed{{{r['answer']}}}$." for r in rows]
    references = [r["reference"] for r in rows]

    reward = MathReward(timeout=TIMEOUT, workers=2)
    start = time.monotonic()
    ours = reward.score(responses, references)
    ours_s = time.monotonic() - start
    reward.close()

    pool = WorkerPool(2, TIMEOUT, preload=("math_verify",))
    raw = pool.run("math_verify_baseline:score_raw", list(zip(responses, references, strict=True)))
    start = time.monotonic()
    outcomes = pool.run("math_verify_baseline:score", list(zip(responses, references, strict=True)))
    theirs_s = time.monotonic() - start
    pool.close()
    theirs = [o.value if o.status == "ok" else 0.0 for o in outcomes]
    theirs_raw = [o.value if o.status == "ok" else 0.0 for o in raw]

    by_category: dict[str, Counter[str]] = defaultdict(Counter)
    disagreements = []
    for row, a, b, b_raw in zip(rows, ours.rewards, theirs, theirs_raw, strict=True):
        c = by_category[row["category"]]
        c["n"] += 1
        c["raw_right"] += b_raw == row["label"]
        c["agree"] += a == b
        c["retrain_right"] += a == row["label"]
        c["math_verify_right"] += b == row["label"]
        if a != b:
            right = "retrain" if a == row["label"] else "math-verify"
            c[f"{right}_right_on_disagreement"] += 1
            disagreements.append({**row, "retrain": a, "math_verify": b, "right": right})
    n = len(rows)
    summary = {
        "pairs": n,
        "agreement": sum(c["agree"] for c in by_category.values()) / n,
        "retrain_accuracy": sum(c["retrain_right"] for c in by_category.values()) / n,
        "math_verify_accuracy": sum(c["math_verify_right"] for c in by_category.values()) / n,
        "math_verify_raw_gold_accuracy": sum(c["raw_right"] for c in by_category.values()) / n,
        "raw_gold_wrong_ones": sum(1 for row, b in zip(rows, theirs_raw, strict=True) if row["label"] == 0 and b == 1
                                   and row["category"] not in POLICY),
        "agreement_without_policy": (sum(c["agree"] for k, c in by_category.items() if k not in POLICY)
                                     / max(1, sum(c["n"] for k, c in by_category.items() if k not in POLICY))),
        "disagreements": len(disagreements),
        "retrain_right_on_disagreement": sum(d["right"] == "retrain" for d in disagreements),
        "math_verify_right_on_disagreement": sum(d["right"] == "math-verify" for d in disagreements),
        "retrain": {"timeouts": ours.timeouts, "errors": ours.errors, "unparsed_refs": ours.unparsed_refs,
                    "seconds": round(ours_s, 1)},
        "math_verify": {"timeouts": sum(o.status == "timeout" for o in outcomes),
                        "errors": sum(o.status == "error" for o in outcomes), "seconds": round(theirs_s, 1)},
        "categories": {k: dict(v) for k, v in sorted(by_category.items())},
    }
    (HERE / "results.json").write_text(json.dumps({"summary": summary, "disagreements": disagreements}, indent=1) + "\n")
    (HERE / "results.md").write_text(markdown(summary, disagreements))
    print(markdown(summary, disagreements))


def markdown(summary: dict, disagreements: list[dict]) -> str:
    s = summary
    lines = [
        "# Checker agreement: `math` reward vs math-verify",
        "",
        f"{s['pairs']} pairs; agreement **{100 * s['agreement']:.1f}%** "
        f"({100 * s['agreement_without_policy']:.1f}% without the policy categories {', '.join(POLICY)}); "
        "accuracy against the known label: "
        f"retrain {100 * s['retrain_accuracy']:.1f}%, math-verify {100 * s['math_verify_accuracy']:.1f}% "
        f"(gold as `$ref$`; {100 * s['math_verify_raw_gold_accuracy']:.1f}% with the gold passed raw, which scores "
        f"{s['raw_gold_wrong_ones']} wrong answers 1 outside the policy categories). "
        f"Of {s['disagreements']} disagreements retrain is right on {s['retrain_right_on_disagreement']}, "
        f"math-verify on {s['math_verify_right_on_disagreement']}.",
        f"retrain: {s['retrain']['timeouts']} timeouts, {s['retrain']['errors']} errors, "
        f"{s['retrain']['unparsed_refs']} unparsed references, {s['retrain']['seconds']} s; "
        f"math-verify: {s['math_verify']['timeouts']} timeouts, {s['math_verify']['errors']} errors, "
        f"{s['math_verify']['seconds']} s (2 workers, timeout {TIMEOUT:g} s).",
        "",
        "| category | pairs | agree | retrain right | math-verify right | math-verify (raw gold) right | disagreements: retrain right / math-verify right |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in s["categories"].items():
        lines.append(f"| {name} | {c['n']} | {c.get('agree', 0)} | {c.get('retrain_right', 0)} | "
                     f"{c.get('math_verify_right', 0)} | {c.get('raw_right', 0)} | {c.get('retrain_right_on_disagreement', 0)} / "
                     f"{c.get('math_verify_right_on_disagreement', 0)} |")
    lines += ["", "## Disagreements", "", "| category | answer | reference | label | retrain | math-verify | right |",
              "|---|---|---|---|---|---|---|"]
    for d in disagreements:
        lines.append(f"| {d['category']} | `{d['answer']}` | `{d['reference']}` | {d['label']} | {d['retrain']:g} | "
                     f"{d['math_verify']:g} | {d['right']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
