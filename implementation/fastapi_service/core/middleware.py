"""The gate in front of every route but the probes: the shared secret, or a signature.

Both are pure ASGI rather than `BaseHTTPMiddleware` so that they answer before
routing and without wrapping streams or breaking context variables.
`FASTAPI_AUTH_MODE` picks one (`install_auth`):

- "secret" (the default): `X-Internal-Secret` must match, checked before the body
  is read, so a large body without the secret costs nothing but the headers.
- "hmac" (SEC-8): the request must be signed (core/signing.py). Everything that
  can be checked from the headers is checked first (a request without a
  signature, or with a stale one, is refused unread); only then is the body read,
  within its size limit, to be hashed, and replayed to the app once it verified.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastapi_service.core import signing
from fastapi_service.core.config import Settings
from fastapi_service.core.problems import send_problem

SECRET_HEADER = b"x-internal-secret"
#: What a gate lets through without the secret unless told otherwise: the seed's probe.
#: The app passes the routes of its probe router (main.py, ``public_operations``).
EXEMPT = frozenset({("GET", "/health")})
Operations = frozenset[tuple[str, str]]

Clock = Callable[[], float]


def install_auth(
    app: Starlette,
    settings: Settings,
    *,
    exempt: Operations = EXEMPT,
    body_limits: Mapping[str, int],
    default_body_limit: int,
) -> None:
    """Add the gate that ``settings.auth_mode`` asks for to a FastAPI/Starlette app.

    ``exempt``: the (METHOD, path) pairs served without the secret (the probes).
    Call it after adding the body-limit middleware, so the gate is outermost.
    """
    if settings.auth_mode == "hmac":
        app.add_middleware(
            SignedRequestMiddleware,
            secrets=settings.accepted_secrets,
            exempt=exempt,
            limits=body_limits,
            default=default_body_limit,
        )
    else:
        app.add_middleware(
            InternalSecretMiddleware, secrets=settings.accepted_secrets, exempt=exempt
        )


class InternalSecretMiddleware:
    """Answer 401/403 problem+json unless `X-Internal-Secret` matches an accepted secret."""

    def __init__(
        self, app: ASGIApp, *, secrets: tuple[bytes, ...], exempt: Operations = EXEMPT
    ) -> None:
        if not secrets or not all(secrets):
            raise ValueError("InternalSecretMiddleware needs at least one non-empty secret")
        self.app = app
        self.secrets = secrets
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self.exempt:
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        await send_problem(send, status, detail)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        """Why this request is refused, or None; never mentions the value sent."""
        values = [value for name, value in scope["headers"] if name.lower() == SECRET_HEADER]
        if not values or (len(values) == 1 and not values[0].strip()):
            return 401, "The X-Internal-Secret header is missing or empty."
        if len(values) > 1:
            return 403, "The X-Internal-Secret header must be sent exactly once."
        value = values[0]
        if not value.isascii():
            return 403, "The X-Internal-Secret header is not valid."
        # Compare with every accepted secret, without an early exit, so the timing
        # does not tell which (if any) matched.
        matched = False
        for secret in self.secrets:
            matched |= hmac.compare_digest(value, secret)
        if not matched:
            return 403, "The X-Internal-Secret header is not valid."
        return None


class SignedRequestMiddleware:
    """Answer 401/403/413 problem+json unless the request is signed with an accepted secret.

    401: the signature or timestamp is missing (`X-Internal-Secret` alone is a missing
    signature). 403: a header is repeated or malformed, the timestamp is more than
    60 s from the service's clock, the request carries a query string (it would not
    be covered by the signature), or the signature does not verify. 413: the body is
    over its path's limit (the same limits as core/body_limit.py), found before it is
    buffered. A request replayed within the 60 s window verifies: the window bounds
    replay, there are no nonces.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        secrets: tuple[bytes, ...],
        limits: Mapping[str, int],
        default: int,
        exempt: Operations = EXEMPT,
        clock: Clock = time.time,
    ) -> None:
        if not secrets or not all(secrets):
            raise ValueError("SignedRequestMiddleware needs at least one non-empty secret")
        self.app = app
        self.secrets = secrets
        self.exempt = exempt
        self.limits = dict(limits)
        self.default = default
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self.exempt:
            await self.app(scope, receive, send)
            return
        checked = self._check_headers(scope)
        if isinstance(checked, _Refusal):
            await send_problem(send, checked.status, checked.detail)
            return
        limit = self.limits.get(scope["path"], self.default)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await send_problem(send, 413, _too_large(limit))
            return
        try:
            read = await _read_body(receive, limit)
        except _BodyTooLarge:
            await send_problem(send, 413, _too_large(limit))
            return
        if read is None:
            return  # the client left while sending: nobody to answer
        body, digest = read
        timestamp, signature, user_id = checked
        message = signing.string_to_sign(
            scope["method"].encode("ascii"), _signed_path(scope), timestamp, user_id, digest
        )
        if not signing.verify(signature, message, self.secrets):
            await send_problem(send, 403, _NOT_VALID)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_headers(self, scope: Scope) -> tuple[bytes, bytes, bytes] | _Refusal:
        """(timestamp, signature, user id) as sent, or why the request is refused.

        Never mentions the values received.
        """
        found: dict[bytes, list[bytes]] = {name: [] for name in _SIGNED_HEADERS}
        for name, value in scope["headers"]:
            values = found.get(name.lower())
            if values is not None:
                values.append(value)
        timestamps = found[signing.TIMESTAMP_HEADER]
        signatures = found[signing.SIGNATURE_HEADER]
        user_ids = found[signing.USER_ID_HEADER]
        if not any(v.strip() for v in timestamps) or not any(v.strip() for v in signatures):
            return _Refusal(401, _UNSIGNED)
        if len(timestamps) > 1 or len(signatures) > 1 or len(user_ids) > 1:
            return _Refusal(403, "A signed header must be sent exactly once.")
        if scope.get("query_string"):
            return _Refusal(403, "A signed request must not carry a query string.")
        timestamp = signing.parse_timestamp(timestamps[0])
        if timestamp is None:
            return _Refusal(403, "X-Internal-Timestamp is not a Unix time in seconds.")
        if not signing.is_fresh(timestamp, self.clock()):
            return _Refusal(
                403,
                f"X-Internal-Timestamp is more than {signing.MAX_SKEW} s away from the "
                "service's clock (a replayed request, or clocks out of sync).",
            )
        if not signing.is_well_formed(signatures[0]):
            return _Refusal(403, _NOT_VALID)
        return timestamps[0], signatures[0], user_ids[0] if user_ids else b""


class _Refusal:
    __slots__ = ("detail", "status")

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


_SIGNED_HEADERS = (signing.TIMESTAMP_HEADER, signing.SIGNATURE_HEADER, signing.USER_ID_HEADER)
_UNSIGNED = (
    "The request is not signed: X-Internal-Timestamp and X-Internal-Signature are "
    "required (X-Internal-Secret alone is not accepted)."
)
_NOT_VALID = "The X-Internal-Signature header is not valid."


class _BodyTooLarge(Exception):
    """The body passed its limit while being read."""


def _signed_path(scope: Scope) -> bytes:
    """The path as it came on the request line (percent-encoding kept), no query."""
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    return raw.split(b"?", 1)[0]


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _too_large(limit: int) -> str:
    return f"The request body is larger than {limit} bytes."


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bytes] | None:
    """(body, hex SHA-256 of it), or None when the client disconnected first.

    Raises ``_BodyTooLarge`` as soon as the body passes ``limit``, so at most
    ``limit`` bytes are ever held. The loop ends with the last chunk, past the
    limit, or at a disconnect, whichever comes first.
    """
    chunks = bytearray()
    digest = hashlib.sha256()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        if len(chunks) + len(chunk) > limit:
            raise _BodyTooLarge
        chunks += chunk
        digest.update(chunk)
        if not message.get("more_body", False):
            return bytes(chunks), digest.hexdigest().encode("ascii")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body once, then listens to the client again."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
