"""Strategic-gram mining: n-grams over-represented in correct versus incorrect completions.

For each word n-gram (lower-cased words, digits and symbols dropped, so arithmetic does not
count) we count the completions that contain it: ``c`` of the ``C`` correct ones, ``i`` of the
``I`` incorrect ones. Its log-odds ratio with an add-``prior`` smoothing and the z-score of
that ratio (Monroe et al. 2008, "Fightin' Words") are::

    lo = log((c + a) / (C - c + a)) - log((i + a) / (I - i + a))
    z  = lo / sqrt(1/(c + a) + 1/(C - c + a) + 1/(i + a) + 1/(I - i + a))

N-grams with ``z >= min_z`` and ``c >= min_count`` are kept, best z first; an n-gram inside a
longer kept one with the same support is dropped (the longer phrase says more). This follows
the HICRA paper's idea (arXiv 2509.03646) of strategic grams, learned from the run's own samples.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from retrain.errors import RetrainError

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
TEXT_FIELDS = ("completion", "text", "response")


@dataclass
class MinedGram:
    phrase: str
    z: float
    log_odds: float
    correct: int  # correct completions containing it
    incorrect: int  # incorrect completions containing it


def read_samples(path: Path, last_steps: int = 0) -> list[tuple[str, float]]:
    """(completion text, reward) from a samples.jsonl; ``last_steps`` > 0 keeps only the latest steps."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line of an interrupted run
        text = next((row[k] for k in TEXT_FIELDS if isinstance(row.get(k), str)), None)
        if text is None or not isinstance(row.get("reward"), (int, float)):
            raise RetrainError(f"{path}:{n}: a sample needs a text field ({', '.join(TEXT_FIELDS)}) and a numeric "
                               "reward.")
        rows.append((int(row.get("step", 0)), text, float(row["reward"])))
    if last_steps > 0 and rows:
        newest = max(s for s, _, _ in rows)
        rows = [r for r in rows if r[0] > newest - last_steps]
    return [(t, r) for _, t, r in rows]


def ngrams(text: str, min_n: int, max_n: int) -> set[str]:
    words = WORD.findall(text.lower())
    return {" ".join(words[k:k + n]) for n in range(min_n, max_n + 1) for k in range(len(words) - n + 1)}


def mine(samples: list[tuple[str, float]], *, min_n: int = 2, max_n: int = 4, min_count: int = 3,
         prior: float = 0.5, min_z: float = 1.96, top_k: int = 50, correct_threshold: float = 0.5) -> list[MinedGram]:
    """The n-grams most over-represented in correct completions (see the module docstring)."""
    correct_counts: Counter[str] = Counter()
    incorrect_counts: Counter[str] = Counter()
    n_correct = n_incorrect = 0
    for text, reward in samples:
        grams = ngrams(text, min_n, max_n)
        if reward >= correct_threshold:
            n_correct += 1
            correct_counts.update(grams)
        else:
            n_incorrect += 1
            incorrect_counts.update(grams)
    a = prior
    scored = []
    for phrase, c in correct_counts.items():
        if c < min_count:
            continue
        i = incorrect_counts.get(phrase, 0)
        lo = math.log((c + a) / (n_correct - c + a)) - math.log((i + a) / (n_incorrect - i + a))
        var = 1 / (c + a) + 1 / (n_correct - c + a) + 1 / (i + a) + 1 / (n_incorrect - i + a)
        z = lo / math.sqrt(var)
        if z >= min_z:
            scored.append(MinedGram(phrase, z, lo, c, i))
    scored.sort(key=lambda g: (-g.z, -len(g.phrase), g.phrase))
    kept: list[MinedGram] = []
    for gram in scored:
        if len(kept) >= top_k:
            break
        if any(f" {gram.phrase} " in f" {k.phrase} " and (k.correct, k.incorrect) == (gram.correct, gram.incorrect)
               for k in kept):
            continue
        kept = [k for k in kept if not (f" {k.phrase} " in f" {gram.phrase} "
                                        and (k.correct, k.incorrect) == (gram.correct, gram.incorrect))]
        kept.append(gram)
    return kept


def write_phrases(path: Path, grams: list[MinedGram], source: str, n_correct: int, n_incorrect: int) -> None:
    """One phrase per line (tab, z, correct, incorrect); readable by [planning] phrases_file."""
    lines = [f"# mined by `retrain hicra mine` from {source}: {n_correct} correct, {n_incorrect} incorrect completions",
             "# phrase\tz\tcorrect\tincorrect"]
    lines += [f"{g.phrase}\t{g.z:.3f}\t{g.correct}\t{g.incorrect}" for g in grams]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
