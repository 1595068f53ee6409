"""Misbehaving servers against the ``openai`` engine and the judge: a real TCP server on 127.0.0.1
(``misbehaving_server.py``) breaks HTTP in every way we know. Promises:

* the engine never tracebacks or hangs: a fault that outlives the retries is one RetrainError line
  naming the server; a transient fault is retried and the rollouts come back;
* the judge never tracebacks or hangs: once it has answered, a failed request is a counted error
  (or timeout) scoring 0, while the other requests of the step are still scored;
* every request ends within the client's bounded total time.
"""

from __future__ import annotations

import json
import time

import pytest
from misbehaving_server import (
    TRANSIENT,
    TRANSPORT,
    MisbehavingServer,
    chat,
    completion,
    json_reply,
    send,
)
from retrain.engines.openai import OpenAIEngine
from retrain.errors import RetrainError
from retrain.http_client import JSONClient, retry_after
from retrain.rewards.judge import JudgeReward
from retrain.types import SamplingParams

PARAMS = SamplingParams(n=2, max_tokens=3, temperature=1.0, seed=1)
TIMEOUT, RETRIES, BACKOFF = 1.0, 2, 0.01
#: The client's bound on one request: every attempt's timeout plus the backoff (here ~3.03 s).
BOUND = TIMEOUT * (RETRIES + 1) + BACKOFF * 3

#: 200 replies that are JSON but not a completion the engine can train on.
ENGINE_SHAPES = {
    "json-list": [1, 2, 3],
    "json-string": "hello",
    "empty-object": {},
    "choices-not-a-list": {"choices": {"index": 0}},
    "choice-is-a-string": {"choices": ["abc", "def"]},
    "wrong-number-of-choices": completion(n=1),
    "token-ids-a-string": completion(token_ids="5 6 7"),
    "token-ids-floats": completion(token_ids=[5.0, 6.5, 7.0]),
    "token-ids-booleans": completion(token_ids=[True, False, True]),
    "token-ids-negative": completion(token_ids=[5, -1, 7]),
    "token-ids-out-of-vocabulary": completion(token_ids=[5, 6, 1_000_000]),
    "logprobs-strings": completion(logprobs=["-0.5", "x", "-1"]),
    "logprobs-missing": {"choices": [{**c, "logprobs": None} for c in completion()["choices"]]},
    "logprobs-too-few": completion(logprobs=[-0.5]),
}

#: 200 replies that are JSON but not a chat completion with a verdict.
JUDGE_SHAPES = {
    "json-list": [1, 2, 3],
    "json-string": "hello",
    "empty-object": {},
    "choices-empty": {"choices": []},
    "choices-a-dict": {"choices": {"message": {"content": "CORRECT"}}},
    "message-missing": {"choices": [{"index": 0}]},
    "content-a-number": chat(1),
    "content-null": chat(None),
    "content-a-list": chat(["CORRECT"]),
    "no-verdict-in-reply": chat("I cannot tell."),
}


def make_engine(server: MisbehavingServer) -> OpenAIEngine:
    engine = OpenAIEngine(url=server.url + "/v1", flavour="openai", timeout=TIMEOUT, retries=RETRIES)
    engine.client.backoff = BACKOFF
    engine.flavour.vocab_size = 100  # what the engine reads from the trainer's model in a run
    return engine


def make_judge(server: MisbehavingServer, tmp_path, timeout: float = TIMEOUT) -> JudgeReward:
    judge = JudgeReward(judge_url=server.url + "/v1", judge_timeout=timeout, judge_retries=RETRIES,
                        judge_cache=str(tmp_path / "cache.jsonl"), workers=2)
    judge.backoff = BACKOFF
    assert judge.score(["warm-up 4"], ["4"]).rewards == [1.0]  # the judge has answered once
    return judge


def engine_fails_with_one_line(server: MisbehavingServer) -> str:
    engine = make_engine(server)
    start = time.monotonic()
    with pytest.raises(RetrainError) as err:
        engine.generate([[1, 2, 3]], PARAMS)  # the prompt's token ids do not matter to the server
    elapsed = time.monotonic() - start
    message = str(err.value)
    assert "\n" not in message and server.url in message, message
    assert elapsed < BOUND + 1.5, f"took {elapsed:.1f} s"
    return message


# -- transport and framing faults: both clients --------------------------------------------------

def engine_server(behaviour) -> MisbehavingServer:
    """Engine prompts are token ids (nothing to mark): every completion request misbehaves."""
    return MisbehavingServer("/v1/completions", behaviour, marked=False)


@pytest.mark.parametrize("name", sorted(TRANSPORT))
def test_engine_survives_a_fault_that_outlives_the_retries(name):
    with engine_server(TRANSPORT[name]) as server:
        message = engine_fails_with_one_line(server)
    assert message.startswith(f"inference server {server.url} did not answer POST /v1/completions after "), message
    assert server.bad_requests <= RETRIES + 1


@pytest.mark.parametrize("name", sorted(TRANSPORT))
def test_judge_counts_a_fault_that_outlives_the_retries_and_scores_the_rest(name, tmp_path, capsys):
    with MisbehavingServer("/v1/chat/completions", TRANSPORT[name]) as server:
        judge = make_judge(server, tmp_path)
        start = time.monotonic()
        result = judge.score(["BAD 4", "so 4", "wrong 5"], ["4", "4", "4"])
        elapsed = time.monotonic() - start
    assert result.rewards == [0.0, 1.0, 0.0]
    timeouts = name in ("no-reply-within-timeout", "body-trickles-forever")
    assert (result.timeouts, result.errors) == ((1, 0) if timeouts else (0, 1)), name
    assert elapsed < BOUND + 1.5, f"took {elapsed:.1f} s"
    warning = capsys.readouterr().err
    assert f"warning: judge {server.url}/v1/chat/completions: 1 of 3 requests failed this step" in warning


@pytest.mark.parametrize("name", sorted(TRANSIENT))
def test_a_transient_fault_is_retried_by_both(name, tmp_path):
    with engine_server(TRANSIENT[name]) as server:
        gen = make_engine(server).generate([[1, 2, 3]], PARAMS)
    assert gen.completion_ids == [[5, 6, 7], [5, 6, 7]] and server.bad_requests >= 2
    with MisbehavingServer("/v1/chat/completions", TRANSIENT[name]) as server:
        judge = make_judge(server, tmp_path)
        result = judge.score(["BAD 4"], ["4"])
    assert result.rewards == [1.0] and (result.errors, result.timeouts) == (0, 0)


def test_retry_after_is_honoured(tmp_path):
    with engine_server(TRANSIENT["http-429-with-retry-after-then-answer"]) as server:
        start = time.monotonic()
        make_engine(server).generate([[1, 2, 3]], PARAMS)
    assert time.monotonic() - start >= 1.0  # the server said "Retry-After: 1"; the backoff alone is 0.01 s


def test_a_retry_after_beyond_the_bound_ends_the_request_at_once():
    with engine_server(TRANSPORT["http-429-retry-after-beyond-budget"]) as server:
        start = time.monotonic()
        with pytest.raises(RetrainError, match=r"after 1 attempt\(s\) \(HTTP 429: slow down\)"):
            make_engine(server).generate([[1, 2, 3]], PARAMS)
    assert time.monotonic() - start < 1.0 and server.bad_requests == 1


@pytest.mark.parametrize(("header", "seconds"), [("3", 3.0), ("0.5", 0.5), ("soon", 0.0), (None, 0.0),
                                                 ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_header_forms(header, seconds):
    assert retry_after(header) == seconds


# -- replies of the wrong shape -------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ENGINE_SHAPES))
def test_engine_refuses_a_reply_of_the_wrong_shape_with_one_line(name):
    with engine_server(send(json_reply(ENGINE_SHAPES[name]))) as server:
        message = engine_fails_with_one_line(server)
    assert server.bad_requests == 1  # well-formed JSON of the wrong shape: not retried
    expected = {
        "json-list": "replied with a JSON list where an object was expected",
        "json-string": "replied with a JSON str where an object was expected",
        "empty-object": "the reply has no list of choices",
        "choices-not-a-list": "the reply has no list of choices",
        "choice-is-a-string": "replied with a JSON str where an object was expected",
        "wrong-number-of-choices": "returned 1 choices for n = 2",
        "token-ids-a-string": "token ids are not a list of integers",
        "token-ids-floats": "token ids are not a list of integers",
        "token-ids-booleans": "token ids are not a list of integers",
        "token-ids-negative": "returned token id -1, outside this model's vocabulary (0..99)",
        "token-ids-out-of-vocabulary": "returned token id 1000000, outside this model's vocabulary (0..99)",
        "logprobs-strings": "logprobs are not all numbers",
        "logprobs-missing": "returned 0 logprobs for 3 tokens",
        "logprobs-too-few": "returned 1 logprobs for 3 tokens",
    }[name]
    assert expected in message, message


@pytest.mark.parametrize("name", sorted(JUDGE_SHAPES))
def test_judge_counts_a_reply_of_the_wrong_shape(name, tmp_path):
    with MisbehavingServer("/v1/chat/completions", send(json_reply(JUDGE_SHAPES[name]))) as server:
        judge = make_judge(server, tmp_path)
        result = judge.score(["BAD 4", "so 4"], ["4", "4"])
    assert result.rewards == [0.0, 1.0] and (result.errors, result.timeouts) == (1, 0)
    assert server.bad_requests == 1  # not retried


# -- whole-run behaviour of the judge ------------------------------------------------------------

def test_one_request_reset_again_and_again_does_not_stop_the_run(tmp_path):
    """One prompt whose connection is reset on every attempt: a counted error; 40 others are scored."""
    with MisbehavingServer("/v1/chat/completions", TRANSPORT["connection-reset"]) as server:
        judge = make_judge(server, tmp_path)
        responses = ["BAD 4"] + [f"so {i}" for i in range(40)]
        result = judge.score(responses, ["4"] + [str(i) for i in range(40)])
    assert result.rewards == [0.0] + [1.0] * 40 and result.errors == 1
    assert server.bad_requests == RETRIES + 1


def test_a_dead_judge_is_bounded_per_step_then_stops_the_run(tmp_path, capsys):
    """Every request hangs: the breaker opens after 2 * workers failures, so a step of 40 costs about
    two bounded requests per worker, not 40; after 3 such steps the run stops with one line."""
    with MisbehavingServer("/v1/chat/completions", TRANSPORT["no-reply-within-timeout"]) as server:
        judge = make_judge(server, tmp_path, timeout=0.3)
        batch = [f"BAD {i}" for i in range(40)]
        for step in range(1, 4):
            start = time.monotonic()
            if step < 3:
                result = judge.score(batch, ["4"] * 40)
                assert result.rewards == [0.0] * 40 and result.timeouts + result.errors == 40
            else:
                with pytest.raises(RetrainError) as err:
                    judge.score(batch, ["4"] * 40)
            assert time.monotonic() - start < 3 * (0.3 * (RETRIES + 1) + 0.03) + 1.5  # threshold / workers + 1 rounds
    message = str(err.value)
    assert message.startswith(f"judge {server.url}/v1/chat/completions: every request of the last 3 steps failed")
    assert "Fix the judge, then continue with --resume latest" in message and "\n" not in message
    # per step: the breaker threshold (2 x 2 workers) plus the requests already in flight (1), each RETRIES + 1 attempts
    assert server.bad_requests <= 3 * (2 * 2 + 1) * (RETRIES + 1)
    assert "warning: judge" in capsys.readouterr().err


def test_a_torn_last_line_in_the_judge_cache_is_skipped(tmp_path):
    cache = tmp_path / "cache.jsonl"
    with MisbehavingServer("/v1/chat/completions", send(b"")) as server:
        judge = make_judge(server, tmp_path)  # writes one verdict to the cache
        with cache.open("a") as f:
            f.write('{"key": "abc", "verd')  # a kill mid-write
        again = JudgeReward(judge_url=server.url + "/v1", judge_cache=str(cache))
        assert len(again.cache) == 1
        again.score(["so 5"], ["5"])  # the next verdict starts on its own line
    lines = cache.read_text().splitlines()
    assert len(lines) == 3 and [json.loads(x)["verdict"] for x in (lines[0], lines[2])] == [1.0, 1.0]


def test_credentials_in_the_judge_url_are_not_printed(tmp_path, capsys):
    with MisbehavingServer("/v1/chat/completions", TRANSPORT["http-500"]) as server:
        url = server.url.replace("http://", "http://bob:hunter2@") + "/v1"
        judge = JudgeReward(judge_url=url, judge_timeout=TIMEOUT, judge_retries=0)
        assert judge.score(["warm-up 4"], ["4"]).rewards == [1.0]
        server.basic_auth = []
        judge.score(["BAD 4"], ["4"])
    err = capsys.readouterr().err
    assert "hunter2" not in err and "http://***@127.0.0.1" in err
    assert server.basic_auth == ["Basic Ym9iOmh1bnRlcjI="]  # the credentials went as HTTP basic auth


def test_the_http_client_counts_attempts_and_never_retries_a_plain_4xx():
    with engine_server(send(json_reply({"error": {"message": "bad model"}}, status=400))) as server:
        client = JSONClient(server.url, timeout=TIMEOUT, retries=RETRIES, backoff=BACKOFF)
        with pytest.raises(RetrainError, match=r"HTTP 400: bad model"):
            client.post("/v1/completions", {"prompt": [1]})
    assert client.requests == 1 and server.bad_requests == 1


def test_the_console_warns_when_any_reward_source_is_failing():
    import io

    from retrain.loggers.console import ConsoleLogger
    from retrain.testing.builders import make_ctx

    stream = io.StringIO()
    logger = ConsoleLogger(make_ctx({"training": {"batch_size": 8, "group_size": 8, "max_steps": 5}}), stream=stream)
    logger.log(1, {"reward/mean": 0.5, "reward/errors": 2.0, "reward/timeouts": 0.0})  # 2 of 64: below 5%
    logger.log(2, {"reward/mean": 0.1, "reward/errors": 3.0, "reward/timeouts": 1.0})  # 4 of 64: warn
    lines = stream.getvalue().splitlines()
    assert [x for x in lines if x.startswith("warning:")] == [
        "warning: step 2: 4 of 64 rewards failed and scored 0 (3 errors, 1 timeouts); the reward source is failing "
        "(its own messages above say why), and those samples teach nothing."]


def test_the_engine_checks_token_ids_against_the_trainers_vocabulary(tiny_model):
    """The vocabulary bound comes from the trainer's model (embedding rows) or its tokenizer."""
    from retrain.config import config_from_dict
    from retrain.engines.openai import vocab_size
    from retrain.plugins import load_plugins
    from retrain.types import RunContext

    reg = load_plugins()
    ctx = RunContext(config=config_from_dict({"model": {"model": str(tiny_model), "lora_rank": 0}}), registry=reg)
    backend = reg.build("backend", "local", ctx=ctx)
    ctx.backend = backend
    assert vocab_size(ctx) == max(backend.model.config.vocab_size, len(backend.tokenizer)) > 0
    assert vocab_size(RunContext(config=ctx.config, registry=reg)) is None  # nothing known: only ids < 0 refused
