"""Bearer-token authentication of the HTTP scorer's ``/v1/*`` routes (RFC 6750, ``Authorization: Bearer <token>``).

Several tokens are accepted at once, so that one can be rotated without downtime: add the new one beside the old,
move the clients, remove the old. Only SHA-256 digests of the tokens are kept, and a presented token is compared
with every one of them by :func:`hmac.compare_digest` on equal-length digests: the time taken says neither which
token matched, nor how many are set, nor how much of one a guess got right. Every refusal — no header, another
scheme, a wrong or malformed token, several ``Authorization`` headers — is the same 401 with
``WWW-Authenticate: Bearer realm="slipstream"`` and the same body, and the connection is closed without reading
the request's body. ``/healthz``, ``/readyz``, ``/metrics`` (and the OpenAPI docs) stay open: probes and Prometheus
need no token, and they serve no score. Pure apart from :meth:`BearerAuth.refuse`, which speaks ASGI.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Final

from pydantic import SecretStr

from slipstream.serving.exceptions import ServingError
from slipstream.serving.http_edge import Send, send_json

__all__ = ["PROTECTED_PREFIX", "UNAUTHORIZED", "BearerAuth", "is_protected"]

PROTECTED_PREFIX: Final = "/v1"
UNAUTHORIZED: Final = "unauthorized"
REALM: Final = b'Bearer realm="slipstream"'
BODY: Final = {"error": UNAUTHORIZED, "detail": "a valid bearer token is required"}


def is_protected(path: str) -> bool:
    """``path`` is under ``/v1`` (the scoring API), which a token guards when tokens are set."""
    size = len(PROTECTED_PREFIX)
    return path.startswith(PROTECTED_PREFIX) and (len(path) == size or path[size] == "/")


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class BearerAuth:
    """The accepted tokens, as digests; :meth:`allows` checks a request's headers."""

    def __init__(self, tokens: Iterable[SecretStr | str]) -> None:
        texts = [t.get_secret_value() if isinstance(t, SecretStr) else t for t in tokens]
        if not texts or not all(texts):
            msg = "the scorer's authentication needs at least one token, none of them empty"
            raise ServingError(msg)
        self._digests = tuple(_digest(text.encode()) for text in texts)

    def __repr__(self) -> str:
        return f"BearerAuth(<{len(self._digests)} tokens>)"

    def allows(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        """The request carries exactly one ``Authorization`` header, of scheme Bearer (any case), with an accepted
        token. Constant time in the token: every digest is compared, whatever matched before."""
        presented: bytes | None = None
        for name, value in headers:
            if name == b"authorization":
                if presented is not None:
                    return False  # two credentials: ambiguous, refused
                presented = value
        if presented is None:
            return False
        scheme, _, token = presented.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        digest = _digest(token.strip())
        matched = False
        for accepted in self._digests:
            matched |= hmac.compare_digest(digest, accepted)
        return matched

    async def refuse(self, send: Send) -> None:
        """The one answer to every request refused: 401, the challenge, nothing about the token; connection closed
        (its body, if any, is never read)."""
        await send_json(send, 401, BODY, close=True, headers=[(b"www-authenticate", REALM)])
