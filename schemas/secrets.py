"""Secrets kept out of what Slipstream prints: the one place credentials in URLs and client configs are masked.

Every part may print a URL (an error naming the Redis it could not reach, a status line, a model event), and the
Kafka clients will carry SASL settings, so the helpers live on the ground floor beside the root exception, where
``features/``, ``serving/``, ``models/``, ``schemas/transport/`` and the CLI all reach them. Pure string functions:
no I/O, no logging.

:func:`mask_url`     one URL: its password (or a lone user part, often a token) and secret query values as ``***``
:func:`mask_urls`    every URL inside a free text (an exception message, a log line)
:func:`mask_config`  a client config (librdkafka, schema-registry): secret-named keys and URL values masked
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

__all__ = ["MASK", "mask_config", "mask_url", "mask_urls"]

MASK: Final = "***"

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# Query parameters and config keys whose values are credentials (matched on the name, case-insensitive).
_SECRET_NAME = re.compile(
    r"pass(word|wd|phrase)?|pwd|secret|token|api[_.-]?key|access[_.-]?key|private[_.-]?key|credential|auth|"
    r"signature|sig$|jaas|user\.info|key\.pem",
    re.IGNORECASE,
)
_QUERY_PAIR = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;#]+)=(?P<value>[^&;#]*)")


def _mask_query(tail: str) -> str:
    def one(match: re.Match[str]) -> str:
        if _SECRET_NAME.search(match["name"]) is None or not match["value"]:
            return match[0]
        return f"{match['sep']}{match['name']}={MASK}"

    return _QUERY_PAIR.sub(one, tail)


def _mask_userinfo(userinfo: str) -> str:
    user, colon, _password = userinfo.partition(":")
    if colon:
        return f"{user}:{MASK}"
    return MASK if userinfo else userinfo  # a user part alone is often a token (https://TOKEN@host)


def mask_url(url: str) -> str:
    """``url`` with its credentials replaced by ``***``: ``redis://user:***@h:6379/0``, ``redis://:***@h/0``,
    ``redis+cluster://u:***@h1:1,h2:2``, ``https://***@host`` (a user part alone), and the values of query
    parameters named like a secret (``?password=***``, ``&token=***``). Everything else is kept, so the result still
    says which host, port and database. A password with an unencoded ``/``, ``?`` or ``#`` (which no URL parser
    reads as intended) is masked up to the last ``@`` rather than shown. Text without ``://`` is returned as is."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if found >= 0:
            end = min(end, found)
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hosts = authority.rpartition("@")
    if at:
        return f"{scheme}://{_mask_userinfo(userinfo)}@{hosts}{_mask_query(tail)}"
    first_at = rest.find("@")
    if first_at >= 0 and ":" in rest[:first_at]:  # user:pa/ss@host: the password runs past the authority's end
        userinfo, _, after = rest.rpartition("@")
        return f"{scheme}://{_mask_userinfo(userinfo)}@{after}"
    return f"{scheme}://{authority}{_mask_query(tail)}"


def mask_urls(text: str) -> str:
    """``text`` with every URL in it passed through :func:`mask_url` (messages of other libraries quote URLs)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda match: mask_url(match[0]), text)


def mask_config(config: Mapping[str, object]) -> dict[str, object]:
    """A copy of a client config fit to print: the value of every key named like a credential (``sasl.password``,
    ``ssl.key.password``, ``sasl.oauthbearer.client.secret``, ``sasl.jaas.config``, ``basic.auth.user.info``,
    ``ssl.key.pem``, ...) is ``***``; URLs in other string values are masked by :func:`mask_url`."""
    shown: dict[str, object] = {}
    for key, value in config.items():
        if _SECRET_NAME.search(key) is not None and value not in (None, ""):
            shown[key] = MASK
        elif isinstance(value, str):
            shown[key] = mask_urls(value)
        else:
            shown[key] = value
    return shown
