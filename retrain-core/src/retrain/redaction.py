"""Credentials out of everything retrain prints or writes.

Two places hold secrets in a config: keys whose name says so (``api_key``, ``token``, ``password``;
the ``*_env`` keys only name a variable) and URLs (``http://user:pass@host``,
``https://host/v1?api_key=...``). :func:`redact_text` masks the URL forms anywhere in a string;
``Config.to_dict(redact=True)`` (config.toml, campaign files, wandb) masks both, and the CLI
passes every error and warning line through :func:`redact_text` before printing it.
"""

from __future__ import annotations

import re

MASK = "***"
QUERY_HINTS = ("key", "token", "secret", "password", "passwd", "auth", "sig")

# scheme://userinfo@  -> scheme://***@   (userinfo: user, user:password, or a bare token)
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://)[^/\s@?#]+@")
# ?api_key=...&token=... -> ?api_key=***&token=***
_QUERY = re.compile(r"([?&][^=&\s#]*(?:" + "|".join(QUERY_HINTS) + r")[^=&\s#]*=)[^&\s#\"']*", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URL in it masked (user info, secret query parameters)."""
    if "://" not in text and "=" not in text:
        return text
    return _QUERY.sub(lambda m: m.group(1) + MASK, _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text))


def is_secret_key(key: str) -> bool:
    """A config key whose value is itself a secret (``*_env`` keys only name a variable)."""
    k = key.lower()
    return not k.endswith("_env") and any(h in k for h in ("key", "token", "secret", "password"))
