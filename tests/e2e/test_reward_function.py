"""A reward given as a plain function by dotted path trains through the CLI (issue 3/10 contract)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from retrain.testing import read_metrics, read_samples, write_toy_config

SCORE = '''
def score(response, reference):
    """1.0 when the completion starts with the reference digit."""
    return 1.0 if response[:1] == reference else 0.0
'''


def test_dotted_score_function_is_the_reward(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "my_reward.py").write_text(SCORE)
    cfg = write_toy_config(tmp_path / "run.toml", tiny_model, tmp_path / "runs",
                           training={"max_tokens": 1}, reward={"type": "my_reward.score"})
    out = subprocess.run([sys.executable, "-m", "retrain.cli.main", str(cfg)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows, samples = read_metrics(tmp_path / "runs" / "run"), read_samples(tmp_path / "runs" / "run")
    expected = [1.0 if s["completion"][:1] == s["reference"] else 0.0 for s in samples]
    assert [s["reward"] for s in samples] == expected
    assert rows[-1]["step"] == 1 and rows[-1]["reward/errors"] == 0.0
