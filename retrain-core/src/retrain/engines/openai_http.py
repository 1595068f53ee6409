"""A small JSON-over-HTTP client for inference servers: stdlib only, retries with backoff.

Connection failures and 5xx answers are retried (exponential backoff, ``retries`` times);
4xx answers are not (they are the caller's mistake or a missing model/adapter) and come back
as :class:`HTTPStatusError` with the server's message. A server that stays unreachable raises
:class:`ServerUnreachable`, whose message says what to check.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from typing import Any

from retrain.errors import RetrainError


class ServerUnreachable(RetrainError):
    """The inference server did not answer (refused, reset, timed out, 5xx) after all retries."""


class HTTPStatusError(RetrainError):
    """The server answered with an error status that retrying cannot fix (4xx)."""

    def __init__(self, message: str, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def server_message(body: str) -> str:
    """The human part of an error body: OpenAI-style ``{"error": {"message": ...}}`` or raw text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300]
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message", data)))
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:300]
    return str(data)[:300]


class JSONClient:
    """POST/GET JSON to ``root`` (e.g. ``http://127.0.0.1:8000``) with retries and backoff."""

    def __init__(self, root: str, *, api_key: str = "", timeout: float = 600.0, retries: int = 3,
                 backoff: float = 0.5) -> None:
        self.root = root.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def get(self, path: str, *, retries: int | None = None, timeout: float | None = None) -> Any:
        return self.request("GET", path, None, retries=retries, timeout=timeout)

    def post(self, path: str, payload: dict[str, Any] | None = None, *, retries: int | None = None,
             timeout: float | None = None) -> Any:
        return self.request("POST", path, payload or {}, retries=retries, timeout=timeout)

    def request(self, method: str, path: str, payload: dict[str, Any] | None, *, retries: int | None = None,
                timeout: float | None = None) -> Any:
        url = self.root + path
        data = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        attempts = 1 + (self.retries if retries is None else retries)
        last = ""
        for attempt in range(attempts):
            if attempt:
                # exponential backoff with jitter: 0.5, 1, 2, 4 ... seconds (capped at 30)
                time.sleep(min(30.0, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                    body = resp.read().decode()
                    try:
                        return json.loads(body) if body.strip() else {}
                    except ValueError:  # some endpoints answer plain text ("Success: ...")
                        return {"text": body}
            except urllib.error.HTTPError as e:
                body = e.read().decode(errors="replace")
                if e.code >= 500:
                    last = f"HTTP {e.code}: {server_message(body)}"
                    continue
                raise HTTPStatusError(f"{method} {url}: HTTP {e.code}: {server_message(body)}", e.code, body) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                reason = getattr(e, "reason", e)
                last = f"{type(reason).__name__}: {reason}"
                continue
        raise ServerUnreachable(
            f"inference server {self.root} did not answer {method} {path} after {attempts} attempt(s) "
            f"({last}). Check that the server is running (its log says why it stopped) and that "
            f"[inference] url is right; checkpoints already written are intact, resume with --resume latest.")
