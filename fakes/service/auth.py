"""The shared-secret check of the real service, in the same shape (401 vs 403)."""

from __future__ import annotations

import hmac

from starlette.types import Scope

SECRET_HEADER = b"x-internal-secret"
OPEN_PATHS = frozenset({"/health"})


def secret_problem(scope: Scope, secret: str | None) -> tuple[int, str] | None:
    """``(status, detail)`` when the request must be refused, else None.

    Missing or empty header -> 401; present more than once, not ASCII, or wrong -> 403.
    The detail never echoes the secret or the value received.
    """
    if not secret or scope["path"] in OPEN_PATHS:
        return None
    values = [value for name, value in scope["headers"] if name.lower() == SECRET_HEADER]
    if not values or values == [b""]:
        return 401, "X-Internal-Secret header is missing"
    if len(values) > 1:
        return 403, "X-Internal-Secret header given more than once"
    if not values[0].isascii():
        return 403, "X-Internal-Secret header is not valid"
    if not hmac.compare_digest(values[0], secret.encode("utf-8")):
        return 403, "X-Internal-Secret header is not valid"
    return None
