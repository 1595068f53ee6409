"""Connecting to a Tinker service, and its failures as one-line messages.

The SDK retries unreachable services for minutes and raises its own exception types; a run
should instead stop at once with what failed, where, and what to do. ``connect`` checks the key
and the URL before the SDK starts its session; a :class:`Link` wraps every SDK call so that
auth, billing/quota, network and refused-request failures become :class:`TinkerServiceError`
lines (the CLI prints a ``RetrainError`` as one line, exit code 2), and waits for results while
probing that the service is still there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from retrain.errors import ConfigError, RetrainError

STANDIN_HINT = "for offline work run the local stand-in: retrain tinker serve --model DIR"


class TinkerServiceError(RetrainError):
    """The Tinker service failed or refused an operation (auth, quota, network, a refused request)."""


def api_key(api_key_env: str, where: str) -> str:
    """The key from the environment (never from the config file, never written anywhere)."""
    key = os.environ.get(api_key_env, "") if api_key_env else ""
    if not key:
        raise ConfigError(f'{where} api_key_env = "{api_key_env}": that environment variable is not set. '
                          f"Export your Tinker API key in it ({STANDIN_HINT}; it accepts any tml-... key).")
    if not key.startswith(("tml-", "eyJ")):
        raise ConfigError(f'{where} api_key_env = "{api_key_env}": the key does not start with "tml-" as '
                          "Tinker API keys do; check the variable.")
    return key


def resolve_url(base_url: str) -> str:
    """[tinker] base_url, else $TINKER_BASE_URL, else the SDK's default (the real service)."""
    from tinker.lib.base_url import resolve_base_url

    return resolve_base_url(base_url or None)


def check_reachable(url: str, what: str = "", timeout: float = 10.0) -> None:
    """Fail in seconds on a wrong URL or a dead network (the SDK would retry for minutes)."""
    import httpx

    try:
        httpx.get(f"{url}/api/v1/healthz", timeout=timeout)  # any HTTP answer means reachable
    except httpx.HTTPError as e:
        during = f" during {what}" if what else ""
        raise TinkerServiceError(f"tinker: cannot reach the service at {url}{during} ({type(e).__name__}: {e}). "
                                 f"Check [tinker] base_url or TINKER_BASE_URL and the network; {STANDIN_HINT}."
                                 + (" Checkpoints already written are intact: --resume continues." if what else "")
                                 ) from e


def describe(e: BaseException, what: str, url: str, api_key_env: str) -> str | None:
    """One line for an SDK failure, or None when ``e`` is not one."""
    import tinker

    status = getattr(e, "status_code", None)
    if isinstance(e, (tinker.AuthenticationError, tinker.PermissionDeniedError)) or status in (401, 403):
        return (f"tinker: {what}: the service at {url} rejected the API key in ${api_key_env} ({status}: "
                f"{_detail(e)}). Check the key, or its project's permissions.")
    if status == 402 or isinstance(e, getattr(tinker, "BillingError", ())):
        return f"tinker: {what}: billing or quota exhausted at {url} (402: {_detail(e)}). Check your Tinker account."
    if isinstance(e, tinker.RateLimitError) or status == 429:
        return f"tinker: {what}: rate limit or capacity quota hit at {url} (429: {_detail(e)}). Retry later."
    if isinstance(e, tinker.APIConnectionError):
        return f"tinker: {what}: network failure talking to {url} ({type(e).__name__}: {e}). {STANDIN_HINT}."
    if isinstance(e, tinker.RequestFailedError):
        return f"tinker: {what}: the service refused the request ({e.category}): {e.message.split(' for self.')[0]}"
    if isinstance(e, tinker.APIStatusError):
        return f"tinker: {what}: the service at {url} answered {status}: {_detail(e)}"
    if isinstance(e, tinker.TinkerError) or type(e).__module__.startswith("tinker"):
        return f"tinker: {what}: {type(e).__name__}: {e}"
    if isinstance(e, ValueError) and "Error retrieving result" in str(e):  # the SDK's fatal future errors
        return f"tinker: {what}: {str(e).split(' for self.')[0]}"
    return None


def _detail(e: BaseException) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    return str(getattr(e, "message", e)).splitlines()[0]


#: While waiting for a result, probe the service this often: a dead service is reported at once,
#: not after the SDK's own retries (minutes for a request, unbounded for a result).
PROBE_S = 15.0


class Link:
    """Where the service is and how long to wait for it; SDK failures in its blocks become one line."""

    def __init__(self, url: str, api_key_env: str, timeout: float) -> None:
        self.url, self.api_key_env, self.timeout = url, api_key_env, timeout

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Re-raise SDK failures inside the block as one-line :class:`TinkerServiceError`s."""
        try:
            yield
        except RetrainError:
            raise
        except Exception as e:
            line = describe(e, what, self.url, self.api_key_env)
            if line is None:
                raise
            raise TinkerServiceError(line) from e

    def wait(self, future: Any, what: str) -> Any:
        """``future.result()``, checking every PROBE_S that the service still answers, at most ``timeout`` s."""
        deadline = time.monotonic() + self.timeout
        with self.errors(what):
            while True:
                try:
                    return future.result(timeout=max(0.1, min(PROBE_S, deadline - time.monotonic())))
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise TinkerServiceError(f"tinker: {what}: no answer from {self.url} within "
                                                 f"{self.timeout:g} s ([tinker] timeout).") from None
                    check_reachable(self.url, what)

    def call(self, what: str, submit: Callable[[], Any]) -> Any:
        """Submit an SDK operation and wait for its result."""
        with self.errors(what):
            future = submit()
        return self.wait(future, what)


#: How long closing waits for the service to finish the session (the SDK would retry for 5 minutes).
CLOSE_S = 10.0


def close_service(service: Any, url: str, status: str = "success") -> None:
    """Finish the SDK's session on the service (``ServiceClient.close``): the service may free it and
    the SDK stops its heartbeat thread, which otherwise warns "Session heartbeat failed" every 10 s
    once the service is gone. A service that is unreachable, refuses, or does not answer within
    CLOSE_S cannot be told: the SDK's session is then released locally only. Never raises: closing
    must not hide how the run ended."""
    try:
        check_reachable(url, "closing the session", timeout=2.0)
        service.close(status, detail="retrain closed its backend at the end of the run").result(timeout=CLOSE_S)
    except Exception:  # noqa: BLE001 - see the docstring: a run's own error (if any) has been reported
        release_locally(service)


def release_locally(service: Any) -> None:
    """Stop the SDK's heartbeat and connection pools without a request. tinker 0.38 has no public call
    for it (``ServiceClient.close`` first tells the service, retrying for minutes): its holders' own
    ``close()`` is used, and nothing happens on an SDK without them."""
    for name in ("_session_holder", "_rest_holder"):
        holder = getattr(service, name, None)
        if holder is not None and callable(getattr(holder, "close", None)):
            holder.close()


def connect(base_url: str, api_key_env: str, timeout: float, where: str) -> tuple[Any, Link]:
    """A ``tinker.ServiceClient`` on a reachable service, and the :class:`Link` to wait on it."""
    key = api_key(api_key_env, where)
    url = resolve_url(base_url)
    check_reachable(url)
    import tinker

    return tinker.ServiceClient(base_url=url, api_key=key), Link(url, api_key_env, timeout)
