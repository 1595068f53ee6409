"""A reward given as a plain function by dotted path trains through the CLI (issue 3/10 contract)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCORE = '''
def score(response, reference):
    """1.0 when the completion starts with the reference digit."""
    return 1.0 if response[:1] == reference else 0.0
'''


def test_dotted_score_function_is_the_reward(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "my_reward.py").write_text(SCORE)
    cfg = tmp_path / "run.toml"
    cfg.write_text(textwrap.dedent(f"""
        [model]
        model = "{tiny_model}"
        lora_rank = 0
        [training]
        max_steps = 1
        batch_size = 2
        group_size = 4
        max_tokens = 1
        save_every = 0
        [data]
        source = "retrain.testing.toy.CopyDigitEnv"
        prompt_template = "{{problem}}"
        [reward]
        type = "my_reward.score"
        [logging]
        log_dir = "{tmp_path / 'runs'}"
        loggers = ["jsonl"]
        [eval]
        at_start = false
        at_end = false
    """))
    out = subprocess.run([sys.executable, "-m", "retrain.cli.main", str(cfg)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in (tmp_path / "runs" / "run" / "metrics.jsonl").read_text().splitlines()]
    samples = [json.loads(x) for x in (tmp_path / "runs" / "run" / "samples.jsonl").read_text().splitlines()]
    expected = [1.0 if s["completion"][:1] == s["reference"] else 0.0 for s in samples]
    assert [s["reward"] for s in samples] == expected
    assert rows[-1]["step"] == 1 and rows[-1]["reward/errors"] == 0.0
