"""The judge reward against a real local HTTP server that fakes a remote judge service."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from fake_judge import FakeRemoteJudge
from retrain.errors import ConfigError, RetrainError
from retrain.rewards.judge import JudgeReward, parse_verdict


@pytest.fixture()
def server():
    with FakeRemoteJudge() as fake:
        yield fake


def make(server: FakeRemoteJudge, tmp_path: Path, **kw) -> JudgeReward:
    reward = JudgeReward(judge_url=server.url, judge_cache=str(tmp_path / "cache.jsonl"), **kw)
    reward.backoff = 0.01  # keep retry tests fast; the schedule (x2 per attempt) is unchanged
    return reward


def test_parse_verdict() -> None:
    assert parse_verdict("CORRECT") == 1.0
    assert parse_verdict("The answer is INCORRECT.") == 0.0
    assert parse_verdict("incorrect at first, but on reflection: Correct") == 1.0  # the last word wins
    assert parse_verdict("maybe") is None


def test_judge_scores_and_caches(server: FakeRemoteJudge, tmp_path: Path) -> None:
    reward = make(server, tmp_path)
    result = reward.score(["so it is 4", "so it is 5", "so it is 4"], ["4", "4", "4"])
    assert result.rewards == [1.0, 0.0, 1.0]
    assert (result.errors, result.timeouts) == (0, 0)
    assert server.requests <= 3
    before = server.requests
    assert reward.score(["so it is 4", "so it is 5"], ["4", "4"]).rewards == [1.0, 0.0]
    assert server.requests == before  # all from the cache
    again = make(server, tmp_path)  # a new run reads the cache file
    assert again.score(["so it is 5"], ["4"]).rewards == [0.0] and server.requests == before


def test_judge_retries_5xx_with_backoff(server: FakeRemoteJudge, tmp_path: Path) -> None:
    server.fail_next = 2
    reward = make(server, tmp_path, judge_retries=3, workers=1)
    assert reward.score(["x = 7"], ["7"]).rewards == [1.0]
    assert server.requests == 3  # two 503s, then the verdict


def test_judge_5xx_after_retries_is_an_error(server: FakeRemoteJudge, tmp_path: Path) -> None:
    server.fail_next = 10
    result = make(server, tmp_path, judge_retries=1, workers=1).score(["x = 7"], ["7"])
    assert result.rewards == [0.0] and result.errors == 1 and server.requests == 2


def test_judge_timeout_and_garbled_verdict_are_counted(server: FakeRemoteJudge, tmp_path: Path) -> None:
    reward = make(server, tmp_path, judge_timeout=0.5, judge_retries=1)
    start = time.monotonic()
    result = reward.score(["slow 7", "garbled 7", "7"], ["7", "7", "7"])
    assert result.rewards == [0.0, 0.0, 1.0]
    assert (result.timeouts, result.errors) == (1, 1)
    assert time.monotonic() - start < 3  # two 0.5 s attempts, not the server's 3 s


def test_judge_rejected_request_is_one_clear_error(server: FakeRemoteJudge, tmp_path: Path) -> None:
    reward = make(server, tmp_path, judge_model="missing")
    with pytest.raises(RetrainError, match="rejected the request: HTTP 404: .*model 'missing' not found.*judge_model"):
        reward.score(["7"], ["7"])


def test_judge_unreachable_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reward = JudgeReward(judge_url=f"http://127.0.0.1:{port}/v1", judge_retries=2)
    reward.backoff = 0.01
    with pytest.raises(RetrainError) as err:
        reward.score(["7"], ["7"])
    message = str(err.value)
    assert message.startswith(f"judge http://127.0.0.1:{port}/v1/chat/completions is unreachable after 3 attempts")
    assert "Start the judge server or fix [reward] judge_url." in message and "\n" not in message


def test_judge_needs_url() -> None:
    with pytest.raises(ConfigError, match="needs \\[reward\\] judge_url"):
        JudgeReward()
