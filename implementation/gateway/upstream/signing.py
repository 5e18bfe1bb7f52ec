"""Signing upstream requests instead of sending the secret (SEC-7).

With ``SERVICE_AUTH_MODE=hmac`` the pooled client (gateway/upstream/client.py)
carries a ``SigningAuth``: httpx's documented hook for signing requests
(https://www.python-httpx.org/advanced/authentication/). Every request leaves
with ``X-Internal-Timestamp`` (Unix seconds) and
``X-Internal-Signature: v1=<hex HMAC-SHA256>`` over::

    METHOD \\n path \\n timestamp \\n X-User-Id \\n hex SHA-256 of the body

keyed with the shared secret, and without ``X-Internal-Secret`` whoever added it:
the secret never travels. ``path`` is the path as sent, without the query string.
The service checks the same string (fastapi_service/core/signing.py; a copy, not
an import: the two deploy apart and share only the wire format).

Hashing needs the whole body before the headers go out. A caller that
already knows the body's digest says so in the request extension
``BODY_SHA256`` (the upload path hashes the body while it spools it,
gateway/proxy/bodies.py), and the body then streams unread; otherwise httpx
reads the body into memory first. Responses are untouched: streams still
stream.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncGenerator, Callable, Generator

import httpx

TIMESTAMP_HEADER = "X-Internal-Timestamp"
SIGNATURE_HEADER = "X-Internal-Signature"
SECRET_HEADER = "X-Internal-Secret"  # noqa: S105 (a header name)
USER_ID_HEADER = "X-User-Id"
# Request extension: the hex SHA-256 (bytes) of a body the caller has hashed already.
BODY_SHA256 = "lamla.body_sha256"
_USER_ID_RAW = USER_ID_HEADER.lower().encode("ascii")

__all__ = ["BODY_SHA256", "SigningAuth", "body_sha256", "sign", "string_to_sign"]


def string_to_sign(
    method: bytes, path: bytes, timestamp: bytes, user_id: bytes, body_digest: bytes
) -> bytes:
    """The signed string for a request whose body's hex SHA-256 is ``body_digest``."""
    return b"\n".join((method, path, timestamp, user_id, body_digest))


def body_sha256(body: bytes) -> bytes:
    """The hex SHA-256 of ``body``, as signed."""
    return hashlib.sha256(body).hexdigest().encode("ascii")


def sign(secret: bytes, message: bytes) -> str:
    """The ``X-Internal-Signature`` value for ``message``."""
    return "v1=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


class SigningAuth(httpx.Auth):
    """Replace the shared secret with a signature on every request."""

    # The body is read (in memory) only when no BODY_SHA256 extension gives its digest.
    requires_request_body = False

    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("SigningAuth needs a non-empty secret")
        self._secret = secret.encode("utf-8")
        self._clock = clock

    def __repr__(self) -> str:
        return "SigningAuth(secret=<hidden>)"  # never the secret, in any log or traceback

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if BODY_SHA256 not in request.extensions:
            request.read()
        yield self._signed(request)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if BODY_SHA256 not in request.extensions:
            await request.aread()
        yield self._signed(request)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield self._signed(request)  # httpx calls the two flows above; kept for the Auth API

    def _signed(self, request: httpx.Request) -> httpx.Request:
        headers = request.headers
        if SECRET_HEADER in headers:
            del headers[SECRET_HEADER]  # every copy
        timestamp = str(int(self._clock()))
        user_id = next((v for k, v in headers.raw if k.lower() == _USER_ID_RAW), b"")
        digest = request.extensions.get(BODY_SHA256) or body_sha256(request.content)
        message = string_to_sign(
            request.method.encode("ascii"),
            request.url.raw_path.split(b"?", 1)[0],
            timestamp.encode("ascii"),
            user_id,
            digest,
        )
        headers[TIMESTAMP_HEADER] = timestamp  # replaces any copy a caller set
        headers[SIGNATURE_HEADER] = sign(self._secret, message)
        return request
