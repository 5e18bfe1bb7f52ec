"""The shared-secret gate in front of every route but `GET /health`.

It is pure ASGI rather than `BaseHTTPMiddleware` so that it answers before routing,
before the body is read (a large body without the secret costs nothing but the
headers), and without wrapping streams or breaking context variables.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from fastapi_service.core.problems import send_problem

SECRET_HEADER = b"x-internal-secret"
EXEMPT = frozenset({("GET", "/health")})


class InternalSecretMiddleware:
    """Answer 401/403 problem+json unless `X-Internal-Secret` matches an accepted secret."""

    def __init__(self, app: ASGIApp, *, secrets: tuple[bytes, ...]) -> None:
        if not secrets or not all(secrets):
            raise ValueError("InternalSecretMiddleware needs at least one non-empty secret")
        self.app = app
        self.secrets = secrets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in EXEMPT:
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
