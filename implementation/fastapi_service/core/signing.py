"""Signed requests (SEC-7/SEC-8): the string the gateway signs and how it is checked.

With ``FASTAPI_AUTH_MODE=hmac`` the gateway never sends the shared secret; it sends
``X-Internal-Timestamp`` (Unix seconds) and ``X-Internal-Signature: v1=<hex>``, the
HMAC-SHA256, keyed with the secret, of::

    METHOD \\n path \\n timestamp \\n X-User-Id \\n hex SHA-256 of the body

``path`` is the request path as sent, without the query string (the routes take
none). No field can hold a newline (a method, a path, digits, a header value, hex),
so the joined string is unambiguous. Everything here works on bytes, as the
headers arrive, so nothing is decoded or normalised between signer and verifier.
The gateway has its own copy (gateway/upstream/signing.py): the two deployables share a
wire format, not code.
"""

from __future__ import annotations

import hashlib
import hmac
import re

TIMESTAMP_HEADER = b"x-internal-timestamp"
SIGNATURE_HEADER = b"x-internal-signature"
USER_ID_HEADER = b"x-user-id"
#: How far (seconds) a timestamp may be from the service's clock, either way.
MAX_SKEW = 60
SCHEME = b"v1="

_SIGNATURE = re.compile(rb"v1=[0-9a-f]{64}")
_TIMESTAMP = re.compile(rb"[0-9]{1,12}")  # Unix seconds; 12 digits is far beyond year 9999


def string_to_sign(
    method: bytes, path: bytes, timestamp: bytes, user_id: bytes, body_sha256: bytes
) -> bytes:
    """The signed string; ``body_sha256`` is the lower-case hex digest of the body."""
    return b"\n".join((method, path, timestamp, user_id, body_sha256))


def sign(secret: bytes, message: bytes) -> bytes:
    """The ``X-Internal-Signature`` value for ``message``."""
    return SCHEME + hmac.new(secret, message, hashlib.sha256).hexdigest().encode("ascii")


def is_well_formed(signature: bytes) -> bool:
    """``v1=`` and 64 lower-case hex digits; anything else is refused unverified."""
    return _SIGNATURE.fullmatch(signature) is not None


def verify(signature: bytes, message: bytes, secrets: tuple[bytes, ...]) -> bool:
    """Whether ``signature`` is ``message`` signed with one of ``secrets``.

    Every secret is tried, in constant time and without an early exit, so the
    timing tells neither whether nor which one matched (rotation, SVC-AUTH-4).
    """
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(signature, sign(secret, message))
    return matched


def parse_timestamp(value: bytes) -> int | None:
    """Unix seconds, or None when the value is not a plain non-negative integer."""
    if _TIMESTAMP.fullmatch(value) is None:
        return None
    return int(value)


def is_fresh(timestamp: int, now: float, max_skew: float = MAX_SKEW) -> bool:
    """Within ``max_skew`` seconds of ``now``, in the past or the future."""
    return abs(now - timestamp) <= max_skew
