"""Connecting to a Tinker service, and its failures as one-line messages.

The SDK retries unreachable services for minutes and raises its own exception types; a run
should instead stop at once with what failed, where, and what to do. ``connect`` checks the key
and the URL before the SDK starts its session; ``service_call`` wraps every SDK call so that
auth, billing/quota, network and refused-request failures become :class:`TinkerServiceError`
lines (the CLI prints a ``RetrainError`` as one line, exit code 2).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from retrain.errors import ConfigError, RetrainError

T = TypeVar("T")

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


def check_reachable(url: str, timeout: float = 10.0) -> None:
    """Fail in seconds on a wrong URL or a dead network (the SDK would retry for minutes)."""
    import httpx

    try:
        httpx.get(f"{url}/api/v1/healthz", timeout=timeout)  # any HTTP answer means reachable
    except httpx.HTTPError as e:
        raise TinkerServiceError(f"tinker: cannot reach the service at {url} ({type(e).__name__}: {e}). "
                                 f"Check [tinker] base_url or TINKER_BASE_URL and the network; {STANDIN_HINT}."
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


@contextmanager
def service_errors(what: str, url: str, api_key_env: str) -> Iterator[None]:
    """Re-raise SDK failures inside the block as one-line :class:`TinkerServiceError`s."""
    try:
        yield
    except RetrainError:
        raise
    except Exception as e:
        line = describe(e, what, url, api_key_env)
        if line is None:
            raise
        raise TinkerServiceError(line) from e


def call(what: str, url: str, api_key_env: str, fn: Callable[[], T]) -> T:
    with service_errors(what, url, api_key_env):
        return fn()


def connect(base_url: str, api_key_env: str, where: str) -> tuple[Any, str]:
    """A ``tinker.ServiceClient`` on a reachable service, and the URL it uses."""
    key = api_key(api_key_env, where)
    url = resolve_url(base_url)
    check_reachable(url)
    import tinker

    return tinker.ServiceClient(base_url=url, api_key=key), url
