"""gateway/asgi/edge.py: which proxies are believed, Secure cookies over HTTPS, security headers."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.asgi.edge import edge, has_secure, secure_cookie_headers, with_security_headers

Scope = dict[str, Any]


async def run(
    trusted: list[str], *, peer: str, headers: list[tuple[bytes, bytes]], cookies: list[bytes]
) -> tuple[Scope, list[tuple[bytes, bytes]]]:
    """(the scope the app saw, the response headers sent) for one request through edge()."""
    seen: dict[str, Scope] = {}
    sent: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen["scope"] = scope
        start = [(b"set-cookie", cookie) for cookie in cookies]
        await send({"type": "http.response.start", "status": 200, "headers": start})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "scheme": "http",
        "client": (peer, 50000),
        "headers": headers,
        "method": "GET",
        "path": "/",
    }
    await edge(app, trusted)(scope, receive, send)
    return seen["scope"], sent[0]["headers"]


SECURITY = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")]
SPOOF = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")]


@pytest.mark.asyncio
@pytest.mark.parametrize("trusted", [[], ["10.0.0.1"], ["10.0.0.0/8"]])
async def test_an_untrusted_peer_cannot_claim_an_address_or_https(trusted: list[str]) -> None:
    scope, headers = await run(trusted, peer="127.0.0.1", headers=SPOOF, cookies=[b"a=b"])
    assert scope["client"] == ("127.0.0.1", 50000)
    assert scope["scheme"] == "http"
    assert headers == [(b"set-cookie", b"a=b"), *SECURITY]


@pytest.mark.asyncio
@pytest.mark.parametrize("trusted", [["127.0.0.1"], ["127.0.0.0/8"], ["::1", "127.0.0.1"]])
async def test_a_trusted_proxy_is_believed(trusted: list[str]) -> None:
    cookies = [b"sessionid=x; HttpOnly; Path=/; SameSite=Lax", b"csrftoken=y; Path=/"]
    scope, headers = await run(trusted, peer="127.0.0.1", headers=SPOOF, cookies=cookies)
    assert scope["client"][0] == "203.0.113.7"
    assert scope["scheme"] == "https"
    assert headers == [(b"set-cookie", cookie + b"; Secure") for cookie in cookies] + SECURITY


@pytest.mark.asyncio
async def test_behind_trusted_proxies_the_client_is_the_right_most_untrusted_address() -> None:
    chain = [(b"x-forwarded-for", b"198.51.100.1, 203.0.113.7, 10.0.0.2")]
    scope, _ = await run(["127.0.0.1", "10.0.0.0/8"], peer="127.0.0.1", headers=chain, cookies=[])
    assert scope["client"][0] == "203.0.113.7"


def test_a_cookie_already_secure_is_left_alone() -> None:
    headers = [(b"Set-Cookie", b"a=b; secure; Path=/"), (b"content-type", b"text/plain")]
    assert secure_cookie_headers(headers) == headers
    assert not has_secure(b"secure=1; Path=/")  # the cookie's name is not an attribute


def test_security_headers_are_added_once() -> None:
    headers = [(b"X-Frame-Options", b"DENY"), (b"content-type", b"text/plain")]
    assert with_security_headers(headers) == [*headers, (b"x-content-type-options", b"nosniff")]
    assert with_security_headers(SECURITY) == SECURITY
