"""``judge``: an LLM judge behind any OpenAI-compatible ``/v1/chat/completions`` endpoint.

The judge sees the reference and the end of the response and must answer CORRECT or INCORRECT
(the last such word in its reply counts; reward 1 or 0). Requests run concurrently
(``[reward] workers`` threads: the work is network-bound) through retrain's one HTTP client
(``retrain.http_client``: ``judge_timeout`` seconds per attempt, up to ``judge_retries`` retries
on connection errors, timeouts, broken replies, 408, 429 (honouring Retry-After) and 5xx, and a
bounded total time per request). Verdicts are cached by (model, prompt) in memory and, when
``judge_cache`` names a file (default: ``<run>/judge_cache.jsonl``), in that JSONL file across
runs; a torn last line in it (a kill mid-write) is skipped.

Outcomes: before the judge has answered once, a server that cannot be reached or that rejects
the request (4xx: wrong model, bad key) stops the run with one clear line: the config is wrong.
After that, every failed request is counted, never fatal: ``timeouts`` (no reply in time after
the retries) or ``errors`` (anything else: 5xx, a reset, a reply that is not JSON, not UTF-8,
truncated, a JSON list, no verdict); both score 0. A step where at least 5% of the requests
failed prints one warning line with the counts and the last failure; once ``2 * workers``
requests in a row have failed, the rest of the step fails fast (a dead judge costs minutes per
step, not hours); and when every request of 3 consecutive steps failed, the run stops with one
line (rewards of 0 teach nothing): fix the judge and resume with ``--resume latest``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

from retrain.errors import ConfigError, RetrainError
from retrain.http_client import HTTPStatusError, JSONClient, RequestFailed, server_message
from retrain.protocols import RewardResult
from retrain.redaction import redact_text
from retrain.train.files import append_jsonl, read_jsonl

DEFAULT_PROMPT = (
    "You are grading a student's answer to a math problem.\n"
    "Reference answer: {reference}\n"
    "Student's response (end):\n{response}\n\n"
    "Is the student's final answer equivalent to the reference answer? "
    "Reply with one word: CORRECT or INCORRECT."
)
MAX_RESPONSE_CHARS = 4000  # the judge sees the end of the response, where the answer is
_VERDICT_RE = re.compile(r"\b(CORRECT|INCORRECT)\b", re.IGNORECASE)


WARN_FAILED_FRACTION = 0.05  # a step with at least this share of failed requests prints a warning
STOP_AFTER_FAILED_STEPS = 3  # every request of this many consecutive steps failed: stop the run


def parse_verdict(text: str) -> float | None:
    """1.0 for CORRECT, 0.0 for INCORRECT (the last one in ``text`` wins), None if neither."""
    found = _VERDICT_RE.findall(text or "")
    return None if not found else (1.0 if found[-1].upper() == "CORRECT" else 0.0)


class JudgeReward:
    """LLM judge over an OpenAI-compatible endpoint (retries, timeout, verdict cache)."""

    config_section = "reward"

    def __init__(self, ctx: Any = None, judge_url: str = "", judge_model: str = "", judge_api_key_env: str = "",
                 judge_timeout: float = 60.0, judge_retries: int = 3, judge_cache: str = "",
                 judge_prompt: str = "", workers: int = 2) -> None:
        if not judge_url:
            raise ConfigError('[reward] type = "judge" needs [reward] judge_url, the base URL of an '
                              'OpenAI-compatible server, e.g. judge_url = "http://127.0.0.1:8000/v1".')
        base = judge_url.rstrip("/")
        base = base[: -len("/chat/completions")] if base.endswith("/chat/completions") else base
        self.url = base + "/chat/completions"
        self.shown_url = redact_text(self.url)
        self.model = judge_model
        api_key = os.environ.get(judge_api_key_env, "") if judge_api_key_env else ""
        if judge_api_key_env and not api_key:
            raise ConfigError(f"[reward] judge_api_key_env = \"{judge_api_key_env}\": that environment variable is "
                              "not set. Export it or leave judge_api_key_env empty.")
        self.prompt = judge_prompt or DEFAULT_PROMPT
        for field in ("{response}", "{reference}"):
            if field not in self.prompt:
                raise ConfigError(f"[reward] judge_prompt must contain {field}.")
        self.workers = max(1, workers)
        self.client = JSONClient(base, api_key=api_key, timeout=judge_timeout, retries=max(0, judge_retries),
                                 label="judge")
        self.cache: dict[str, float] = {}
        self._lock = threading.Lock()
        self.answered = 0  # requests that got a verdict-bearing reply (lifetime)
        self._streak = 0  # consecutive failed requests (the breaker opens at 2 * workers)
        self._failed_steps = 0  # consecutive steps where every request failed
        self._last_failure = ""
        run_dir = getattr(ctx, "run_dir", None)
        self.cache_path = Path(judge_cache) if judge_cache else (Path(run_dir) / "judge_cache.jsonl" if run_dir else None)
        if self.cache_path is not None:
            for row in read_jsonl(self.cache_path):  # a torn last line (kill mid-write) is skipped
                try:
                    self.cache[str(row["key"])] = float(row["verdict"])
                except (KeyError, TypeError, ValueError):
                    continue

    # -- settings kept as attributes (tests shorten the backoff) ------------------------------
    @property
    def backoff(self) -> float:
        return self.client.backoff

    @backoff.setter
    def backoff(self, value: float) -> None:
        self.client.backoff = value

    @property
    def requests(self) -> int:
        """HTTP requests sent (lifetime, retries included)."""
        return self.client.requests

    @property
    def retries(self) -> int:
        return self.client.retries

    def _key(self, prompt: str) -> str:
        return hashlib.sha256(f"{self.model}\0{prompt}".encode()).hexdigest()

    def _ask(self, prompt: str) -> str:
        """The judge's reply text; raises RequestFailed (after retries) or _BadReply."""
        body: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}], "temperature": 0.0, "max_tokens": 16}
        if self.model:
            body["model"] = self.model
        data = self.client.post("/chat/completions", body)
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise _BadReply(f"unexpected reply: {json.dumps(data)[:200]}") from None
        if not isinstance(content, str):
            raise _BadReply(f"reply content is {type(content).__name__}, not text: {json.dumps(content)[:120]}")
        return content

    def _judge(self, response: str, reference: str) -> tuple[str, float]:
        prompt = self.prompt.replace("{reference}", reference).replace("{response}", response[-MAX_RESPONSE_CHARS:])
        key = self._key(prompt)
        with self._lock:
            if key in self.cache:
                return "ok", self.cache[key]
            if self._streak >= 2 * self.workers:  # the breaker is open for the rest of this step
                return "error", 0.0
        try:
            verdict = parse_verdict(self._ask(prompt))
        except HTTPStatusError as e:
            if not self.answered:
                raise RetrainError(f"judge {self.shown_url} rejected the request: HTTP {e.status}: "
                                   f"{redact_text(server_message(e.body))}. Check "
                                   "[reward] judge_model and judge_api_key_env.") from None
            return self._failed("error", f"HTTP {e.status}: {e.detail[-160:]}")
        except RequestFailed as e:
            if e.kind == "unreachable" and not self.answered:
                raise RetrainError(f"judge {self.shown_url} is unreachable after {self.retries + 1} attempts "
                                   f"({e.detail}). Start the judge server or fix [reward] judge_url.") from None
            return self._failed("timeout" if e.kind == "timeout" else "error", e.detail)
        except _BadReply as e:
            return self._failed("error", str(e))
        with self._lock:
            self.answered += 1
            self._streak = 0
        if verdict is None:
            return "error", 0.0
        self._remember(key, verdict)
        return "ok", verdict

    def _failed(self, status: str, detail: str) -> tuple[str, float]:
        with self._lock:
            self._streak += 1
            self._last_failure = redact_text(detail)
        return status, 0.0

    def _remember(self, key: str, verdict: float) -> None:
        with self._lock:
            self.cache[key] = verdict
            if self.cache_path is not None:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                append_jsonl(self.cache_path, [{"key": key, "verdict": verdict}])

    def score(self, responses: list[str], references: list[str]) -> RewardResult:
        if len(responses) != len(references):
            raise ValueError(f"{len(responses)} responses but {len(references)} references")
        from concurrent.futures import ThreadPoolExecutor

        self._streak = 0  # every step tries the judge again
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            outcomes = list(pool.map(self._judge, responses, references))
        result = RewardResult([value for _, value in outcomes])
        result.timeouts = sum(status == "timeout" for status, _ in outcomes)
        result.errors = sum(status == "error" for status, _ in outcomes)
        self._report(len(outcomes), result)
        return result

    def _report(self, n: int, result: RewardResult) -> None:
        """Warn on the console when the judge is failing; stop after STOP_AFTER_FAILED_STEPS dead steps."""
        failed = result.errors + result.timeouts
        if n and failed >= max(1.0, WARN_FAILED_FRACTION * n) and self._last_failure:
            print(f"warning: judge {self.shown_url}: {failed} of {n} requests failed this step ({result.timeouts} "
                  f"timeouts, {result.errors} errors; last: {self._last_failure[:200]}); they score 0.",
                  file=sys.stderr, flush=True)
        self._failed_steps = self._failed_steps + 1 if n and failed == n and self._last_failure else 0
        if self._failed_steps >= STOP_AFTER_FAILED_STEPS:
            raise RetrainError(f"judge {self.shown_url}: every request of the last {self._failed_steps} steps failed "
                               f"(last: {self._last_failure[:200]}); rewards of 0 teach nothing. Fix the judge, "
                               "then continue with --resume latest (checkpoints are intact).")

    def close(self) -> None:
        pass


class _BadReply(Exception):
    """A 200 reply that is JSON but not a chat completion (a list, no choices, content not text)."""
