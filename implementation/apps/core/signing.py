"""Signing upstream requests instead of sending the secret (SEC-7).

With ``FASTAPI_AUTH_MODE=hmac`` the pooled client (apps/core/async_client.py)
carries a ``SigningAuth``: httpx's documented hook for signing requests
(https://www.python-httpx.org/advanced/authentication/). Every request leaves
with ``X-Internal-Timestamp`` (Unix seconds) and
``X-Internal-Signature: v1=<hex HMAC-SHA256>`` over::

    METHOD \\n path \\n timestamp \\n X-User-Id \\n hex SHA-256 of the body

keyed with the shared secret, and without ``X-Internal-Secret`` whoever added it:
the secret never travels. ``path`` is the path as sent, without the query string.
The service checks the same string (fastapi_service/core/signing.py; a copy, not
an import: the two deploy apart and share only the wire format).

Hashing needs the whole body before the headers go out, so httpx reads a
streamed body (an upload's spool) into memory first; the gateway caps uploads
at MAX_UPLOAD_SIZE, which bounds that. Responses are untouched: streams still
stream.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Generator

import httpx

TIMESTAMP_HEADER = "X-Internal-Timestamp"
SIGNATURE_HEADER = "X-Internal-Signature"
SECRET_HEADER = "X-Internal-Secret"  # noqa: S105 (a header name)
USER_ID_HEADER = "X-User-Id"
_USER_ID_RAW = USER_ID_HEADER.lower().encode("ascii")

__all__ = ["SigningAuth", "sign", "string_to_sign"]


def string_to_sign(
    method: bytes, path: bytes, timestamp: bytes, user_id: bytes, body: bytes
) -> bytes:
    """The signed string for a request with ``body`` (hashed here)."""
    digest = hashlib.sha256(body).hexdigest().encode("ascii")
    return b"\n".join((method, path, timestamp, user_id, digest))


def sign(secret: bytes, message: bytes) -> str:
    """The ``X-Internal-Signature`` value for ``message``."""
    return "v1=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


class SigningAuth(httpx.Auth):
    """Replace the shared secret with a signature on every request."""

    requires_request_body = True  # httpx reads the body before auth_flow runs

    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("SigningAuth needs a non-empty secret")
        self._secret = secret.encode("utf-8")
        self._clock = clock

    def __repr__(self) -> str:
        return "SigningAuth(secret=<hidden>)"  # never the secret, in any log or traceback

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = request.headers
        if SECRET_HEADER in headers:
            del headers[SECRET_HEADER]  # every copy
        timestamp = str(int(self._clock()))
        user_id = next((v for k, v in headers.raw if k.lower() == _USER_ID_RAW), b"")
        message = string_to_sign(
            request.method.encode("ascii"),
            request.url.raw_path.split(b"?", 1)[0],
            timestamp.encode("ascii"),
            user_id,
            request.content,
        )
        headers[TIMESTAMP_HEADER] = timestamp  # replaces any copy a caller set
        headers[SIGNATURE_HEADER] = sign(self._secret, message)
        yield request
