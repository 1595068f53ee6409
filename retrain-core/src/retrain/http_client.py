"""One JSON-over-HTTP client with retries, for every server retrain talks to (inference engines,
the LLM judge): stdlib only.

The retry rule, in one place:

* **Retried** (exponential backoff with jitter, at most ``retries`` times): the connection could
  not be made or was reset; no reply within ``timeout``; a reply that is not HTTP or is cut short;
  a 2xx reply whose body is not the JSON it claims to be (malformed, non-UTF-8, truncated, an
  HTML error page);
  HTTP **408, 429 and every 5xx**. On 429 and 503 a ``Retry-After`` header (seconds or an HTTP
  date) is honoured: the next attempt waits at least that long.
* **Not retried**: every other 4xx (a wrong model name, a bad key, a missing adapter): it comes
  back at once as :class:`HTTPStatusError` with the server's message.
* **Bounded**: a request never takes longer than ``max_total`` seconds in all (attempts and
  waits; default ``timeout * (retries + 1)`` plus the backoff). A ``Retry-After`` that would pass
  that bound ends the request now instead of sleeping past it.

When the retries are spent, :class:`RequestFailed` says what happened last; its ``kind`` is
``"unreachable"`` (no connection), ``"timeout"``, ``"status"`` (408/429/5xx) or ``"bad_reply"``.
Callers decide what a failure means: the engine stops the run with the message (rollouts cannot
be made up), the judge counts the sample as an error and scores it 0.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from retrain.errors import RetrainError
from retrain.redaction import redact_text

#: Statuses that are retried (besides connection failures, timeouts and unreadable replies).
RETRIED_STATUSES = frozenset({408, 429, *range(500, 600)})
#: Statuses whose Retry-After header is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 503})
BACKOFF_CAP = 30.0  # seconds between two attempts at most (unless the server's Retry-After says more)


class RequestFailed(RetrainError):
    """A request that failed after its retries (or at once, for a 4xx)."""

    def __init__(self, message: str, kind: str = "error", detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind  # "unreachable" | "timeout" | "status" | "bad_reply"
        self.detail = detail or message


class ServerUnreachable(RequestFailed):
    """The server did not answer usefully (refused, reset, timed out, 5xx, garbage) after all retries."""


class HTTPStatusError(RequestFailed):
    """The server answered with an error status that retrying cannot fix (4xx other than 408/429)."""

    def __init__(self, message: str, status: int, body: str) -> None:
        super().__init__(message, "status", message)
        self.status = status
        self.body = body


class _Retry(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, kind: str, detail: str, wait: float = 0.0) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.wait = kind, detail, wait


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


def retry_after(value: str | None) -> float:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); 0 if absent/bad."""
    if not value:
        return 0.0
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return 0.0
    return max(0.0, when.timestamp() - time.time())


def _decode_json(raw: bytes, content_type: str) -> Any:
    """The reply's JSON; plain text (``Success: ...``) as ``{"text": ...}``; else a retryable bad reply."""
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Retry("bad_reply", f"reply is not UTF-8 (byte {e.start} of {len(raw)})") from None
    if "html" in content_type.lower():  # a proxy's or load balancer's error page, not the server's answer
        raise _Retry("bad_reply", f"an HTML page instead of JSON: {body[:80]!r}")
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError as e:
        if "json" in content_type.lower() or body.lstrip()[:1] in ("{", "["):
            raise _Retry("bad_reply", f"malformed JSON ({e.msg} at char {e.pos} of {len(body)}): "
                                      f"{body[:80]!r}") from None
        return {"text": body}  # some endpoints answer plain text


def _split_credentials(root: str) -> tuple[str, str]:
    """``http://user:pass@host/x`` -> (``http://host/x``, base64 ``user:pass`` for HTTP basic auth)."""
    import base64
    import urllib.parse

    parts = urllib.parse.urlsplit(root)
    if parts.username is None and parts.password is None:
        return root, ""
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), token


def _read_until(resp: Any, deadline: float) -> bytes:
    """The whole body, but never past ``deadline``: a server that trickles bytes cannot hold us forever."""
    parts = []
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            missing = getattr(resp, "length", None)  # bytes the Content-Length promised and never came
            if missing:
                raise _Retry("bad_reply", f"reply cut short ({sum(map(len, parts))} bytes received, {missing} missing)")
            return b"".join(parts)
        parts.append(chunk)
        if time.monotonic() > deadline:
            raise _Retry("timeout", f"reply still arriving after the time allowed ({sum(map(len, parts))} bytes so far)")


class JSONClient:
    """POST/GET JSON to ``root`` (e.g. ``http://127.0.0.1:8000``) with the retry rule above.

    ``label`` names the server in messages ("inference server", "judge"). The counters
    (``requests``, ``retried``) are for metrics and tests.
    """

    def __init__(self, root: str, *, api_key: str = "", timeout: float = 600.0, retries: int = 3,
                 backoff: float = 0.5, max_total: float | None = None, label: str = "server") -> None:
        self.root, self.basic_auth = _split_credentials(root.rstrip("/"))
        self.api_key = api_key
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_total = max_total
        self.label = label
        self.requests = 0  # HTTP attempts sent (lifetime)
        self.retried = 0  # attempts that failed and were retried (lifetime)
        self._lock = threading.Lock()

    @property
    def shown_root(self) -> str:
        """The root as printed: credentials masked (user info in the URL goes as basic auth)."""
        root = redact_text(self.root)
        return root.replace("://", "://***@", 1) if self.basic_auth else root

    def get(self, path: str, *, retries: int | None = None, timeout: float | None = None) -> Any:
        return self.request("GET", path, None, retries=retries, timeout=timeout)

    def post(self, path: str, payload: dict[str, Any] | None = None, *, retries: int | None = None,
             timeout: float | None = None) -> Any:
        return self.request("POST", path, payload or {}, retries=retries, timeout=timeout)

    def _budget(self, attempts: int, timeout: float) -> float:
        if self.max_total is not None:
            return self.max_total
        waits = sum(min(BACKOFF_CAP, self.backoff * 2 ** k) for k in range(attempts - 1))
        return timeout * attempts + waits

    def request(self, method: str, path: str, payload: dict[str, Any] | None, *, retries: int | None = None,
                timeout: float | None = None) -> Any:
        """The decoded JSON reply; raises :class:`RequestFailed` (or a subclass) per the retry rule."""
        url = self.root + path
        data = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        elif self.basic_auth:
            headers["Authorization"] = f"Basic {self.basic_auth}"
        timeout = timeout or self.timeout
        attempts = 1 + (self.retries if retries is None else max(0, retries))
        deadline = time.monotonic() + self._budget(attempts, timeout)
        last = _Retry("unreachable", "not sent")
        sent = 0
        for attempt in range(attempts):
            if attempt:
                # exponential backoff with jitter: 0.5, 1, 2, 4 ... s (capped), or the server's Retry-After
                pause = max(last.wait, min(BACKOFF_CAP, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with self._lock:
                self.requests += 1
            sent += 1
            try:
                return self._attempt(method, url, data, headers, min(timeout, left), deadline)
            except _Retry as e:
                last = e
                with self._lock:
                    self.retried += attempt + 1 < attempts
        raise ServerUnreachable(
            f"{self.label} {self.shown_root} did not answer {method} {path} after {sent} attempt(s) "
            f"({last.detail}). Check that the server is running (its log says why it stopped) and that its "
            f"URL is right; checkpoints already written are intact, resume with --resume latest.",
            last.kind, last.detail)

    def _attempt(self, method: str, url: str, data: bytes | None, headers: dict[str, str], timeout: float,
                 deadline: float) -> Any:
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = _read_until(resp, min(deadline, time.monotonic() + timeout))
                return _decode_json(raw, resp.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as e:
            try:
                body = e.read().decode(errors="replace")
            except (OSError, http.client.HTTPException):
                body = ""
            detail = f"HTTP {e.code}: {server_message(body)}"
            if e.code in RETRIED_STATUSES:
                wait = retry_after(e.headers.get("Retry-After")) if e.code in RETRY_AFTER_STATUSES and e.headers else 0.0
                raise _Retry("status", detail, wait) from None
            raise HTTPStatusError(f"{method} {redact_text(url)}: {detail}", e.code, body) from None
        except (TimeoutError, socket.timeout):
            raise _Retry("timeout", f"no reply within {timeout:.3g} s") from None
        except http.client.IncompleteRead as e:
            raise _Retry("bad_reply", f"reply cut short ({len(e.partial)} bytes received)") from None
        except (http.client.BadStatusLine, http.client.LineTooLong) as e:
            raise _Retry("bad_reply", f"not an HTTP reply ({type(e).__name__}: {str(e)[:60]!r})") from None
        except http.client.RemoteDisconnected:
            raise _Retry("bad_reply", "the server closed the connection without replying") from None
        except http.client.HTTPException as e:
            raise _Retry("bad_reply", f"broken HTTP reply ({type(e).__name__}: {str(e)[:80]})") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retry("timeout", f"no reply within {timeout:.3g} s") from None
            kind = "unreachable" if isinstance(reason, (ConnectionRefusedError, socket.gaierror)) else "bad_reply"
            raise _Retry(kind, f"{type(reason).__name__}: {reason}") from None
        except (ConnectionError, OSError) as e:
            kind = "unreachable" if isinstance(e, ConnectionRefusedError) else "bad_reply"
            raise _Retry(kind, f"{type(e).__name__}: {e}") from None
