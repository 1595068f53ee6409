"""``judge``: an LLM judge behind any OpenAI-compatible ``/v1/chat/completions`` endpoint.

The judge sees the reference and the end of the response and must answer CORRECT or INCORRECT
(the last such word in its reply counts; reward 1 or 0). Requests run concurrently
(``[reward] workers`` threads: the work is network-bound), each with ``judge_timeout`` seconds and
up to ``judge_retries`` retries with exponential backoff (0.5 s, 1 s, 2 s, ...) on connection
errors, timeouts, 429 and 5xx. Verdicts are cached by (model, prompt) in memory and, when
``judge_cache`` names a file, in that JSONL file across runs.

Outcomes: a server that cannot be reached at all (connection refused, unknown host) or that
rejects the request (4xx other than 429: wrong model, bad key) stops the run with one clear
line; a request that still times out after the retries counts in ``timeouts``; a 5xx after the
retries or an unreadable verdict counts in ``errors``; both score 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

from retrain.errors import ConfigError, RetrainError
from retrain.protocols import RewardResult

DEFAULT_PROMPT = (
    "You are grading a student's answer to a math problem.\n"
    "Reference answer: {reference}\n"
    "Student's response (end):\n{response}\n\n"
    "Is the student's final answer equivalent to the reference answer? "
    "Reply with one word: CORRECT or INCORRECT."
)
MAX_RESPONSE_CHARS = 4000  # the judge sees the end of the response, where the answer is
_VERDICT_RE = re.compile(r"\b(CORRECT|INCORRECT)\b", re.IGNORECASE)


class _Unreachable(Exception):
    pass


class _Retryable(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # "timeout" | "error" | "unreachable"


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
        self.url = judge_url.rstrip("/") + ("" if judge_url.rstrip("/").endswith("/chat/completions")
                                            else "/chat/completions")
        self.model = judge_model
        self.api_key = os.environ.get(judge_api_key_env, "") if judge_api_key_env else ""
        if judge_api_key_env and not self.api_key:
            raise ConfigError(f"[reward] judge_api_key_env = \"{judge_api_key_env}\": that environment variable is "
                              "not set. Export it or leave judge_api_key_env empty.")
        self.timeout = judge_timeout
        self.retries = max(0, judge_retries)
        self.prompt = judge_prompt or DEFAULT_PROMPT
        for field in ("{response}", "{reference}"):
            if field not in self.prompt:
                raise ConfigError(f"[reward] judge_prompt must contain {field}.")
        self.workers = max(1, workers)
        self.backoff = 0.5
        self.requests = 0  # HTTP requests sent (lifetime), for metrics and tests
        self.cache: dict[str, float] = {}
        self._lock = threading.Lock()
        run_dir = getattr(ctx, "run_dir", None)
        self.cache_path = Path(judge_cache) if judge_cache else (Path(run_dir) / "judge_cache.jsonl" if run_dir else None)
        if self.cache_path is not None and self.cache_path.is_file():
            for line in self.cache_path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.cache[row["key"]] = float(row["verdict"])

    def _key(self, prompt: str) -> str:
        return hashlib.sha256(f"{self.model}\0{prompt}".encode()).hexdigest()

    def _post(self, prompt: str) -> str:
        import urllib.error  # here, not at module level: plugin listing stays fast
        import urllib.request

        body = {"messages": [{"role": "user", "content": prompt}], "temperature": 0.0, "max_tokens": 16}
        if self.model:
            body["model"] = self.model
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with self._lock:
            self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:200].replace("\n", " ")
            if e.code == 429 or e.code >= 500:
                raise _Retryable("error", f"HTTP {e.code}: {detail}") from None
            raise RetrainError(f"judge {self.url} rejected the request: HTTP {e.code}: {detail}. Check "
                               "[reward] judge_model and judge_api_key_env.") from None
        except TimeoutError as e:
            raise _Retryable("timeout", f"no reply within {self.timeout:g} s") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, (TimeoutError, socket.timeout)):
                raise _Retryable("timeout", f"no reply within {self.timeout:g} s") from e
            raise _Retryable("unreachable", f"{type(e.reason).__name__}: {e.reason}") from e
        except (ConnectionError, OSError) as e:
            raise _Retryable("unreachable", f"{type(e).__name__}: {e}") from e
        try:
            return str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise _Retryable("error", f"unexpected reply: {json.dumps(data)[:200]}") from None

    def _judge(self, response: str, reference: str) -> tuple[str, float]:
        prompt = self.prompt.replace("{reference}", reference).replace("{response}", response[-MAX_RESPONSE_CHARS:])
        key = self._key(prompt)
        with self._lock:
            if key in self.cache:
                return "ok", self.cache[key]
        last: _Retryable | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                verdict = parse_verdict(self._post(prompt))
            except _Retryable as e:
                last = e
                continue
            if verdict is None:
                return "error", 0.0
            self._remember(key, verdict)
            return "ok", verdict
        assert last is not None
        if last.kind == "unreachable":
            raise RetrainError(f"judge {self.url} is unreachable after {self.retries + 1} attempts ({last}). "
                               "Start the judge server or fix [reward] judge_url.")
        return last.kind, 0.0

    def _remember(self, key: str, verdict: float) -> None:
        with self._lock:
            self.cache[key] = verdict
            if self.cache_path is not None:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                with self.cache_path.open("a") as f:
                    f.write(json.dumps({"key": key, "verdict": verdict}) + "\n")

    def score(self, responses: list[str], references: list[str]) -> RewardResult:
        if len(responses) != len(references):
            raise ValueError(f"{len(responses)} responses but {len(references)} references")
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            outcomes = list(pool.map(self._judge, responses, references))
        result = RewardResult([value for _, value in outcomes])
        result.timeouts = sum(status == "timeout" for status, _ in outcomes)
        result.errors = sum(status == "error" for status, _ in outcomes)
        return result

    def close(self) -> None:
        pass
