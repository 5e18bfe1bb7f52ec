"""Header filters between the browser, the gateway and the service.

Pure functions over lists of (name, value) pairs, so they are easy to test.
Both directions are built from allow-lists; hop-by-hop headers and every header
named in a Connection header are dropped as well (GW-PROXY-3/4/5, RFC 9110
section 7.6.1), so a client can never smuggle a header the service trusts.
"""

from __future__ import annotations

from collections.abc import Iterable

Headers = Iterable[tuple[str, str]]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

# What the browser may pass on to the service. Everything else (cookie,
# authorization, x-forwarded-*, x-internal-*, x-user-* ...) stays behind.
UPSTREAM_ALLOWED = frozenset({"accept", "accept-language"})

# What the service may pass back. Never set-cookie, the secret, the user id,
# server/date (Django sets its own), content-length (Django computes it) or
# content-encoding (the proxy relays decoded bytes).
DOWNSTREAM_ALLOWED = frozenset(
    {"content-type", "cache-control", "x-accel-buffering", "retry-after", "content-language"}
)

SECRET_HEADER = "X-Internal-Secret"  # noqa: S105 (a header name)
USER_ID_HEADER = "X-User-Id"
REQUEST_ID_HEADER = "X-Request-ID"
FORWARDED_FOR_HEADER = "X-Forwarded-For"
USER_AGENT = "lamla-gateway"


def connection_tokens(headers: Headers) -> frozenset[str]:
    """Lower-cased header names listed in any Connection header."""
    return frozenset(
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    )


def strip_hop_by_hop(headers: Headers) -> list[tuple[str, str]]:
    """Drop hop-by-hop headers and the headers a Connection header names."""
    pairs = list(headers)
    dropped = HOP_BY_HOP | connection_tokens(pairs)
    return [(name, value) for name, value in pairs if name.lower() not in dropped]


def is_trusted_by_service(name: str) -> bool:
    """Headers only the gateway may set: a client's copy is always discarded."""
    lowered = name.lower()
    return lowered.startswith(("x-internal-", "x-user-", "x-forwarded-")) or lowered in {
        "cookie",
        "authorization",
        "forwarded",
    }


def upstream_request_headers(
    incoming: Headers,
    *,
    secret: str,
    user_id: object,
    request_id: str,
    content_type: str | None,
    client_address: str | None = None,
) -> list[tuple[str, str]]:
    """Headers for the service: the allow-listed client ones plus the gateway's own.

    ``Accept-Encoding: identity`` keeps the relayed bytes identical to what the
    service wrote (no decode/re-encode on loopback). ``X-Forwarded-For`` is the
    client address the gateway determined (``REMOTE_ADDR``: the peer, or behind
    a trusted proxy the address it vouches for, gateway/asgi/edge.py), never
    the client's own claim (SEC-4).
    """
    headers = [
        (name.lower(), value)
        for name, value in strip_hop_by_hop(incoming)
        if name.lower() in UPSTREAM_ALLOWED and not is_trusted_by_service(name)
    ]
    if content_type:
        headers.append(("content-type", content_type))
    headers += [
        ("accept-encoding", "identity"),
        ("user-agent", USER_AGENT),
        (REQUEST_ID_HEADER.lower(), request_id),
        (SECRET_HEADER.lower(), secret),
        (USER_ID_HEADER.lower(), str(user_id)),
    ]
    if client_address:
        headers.append((FORWARDED_FOR_HEADER.lower(), client_address))
    return headers


def downstream_response_headers(upstream: Headers) -> list[tuple[str, str]]:
    """The service's response headers the browser may see."""
    return [
        (name.lower(), value)
        for name, value in strip_hop_by_hop(upstream)
        if name.lower() in DOWNSTREAM_ALLOWED
    ]
