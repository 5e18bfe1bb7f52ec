"""X-Request-ID (GW-PROXY-6): kept when well formed, minted otherwise, on every response."""

from __future__ import annotations

import re

import pytest
from django.test import AsyncClient

from gateway.request_id import resolve_request_id

HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize("value", ["abc", "A.b_c:d-9", "x" * 128, "0"])
def test_well_formed_ids_are_kept(value: str) -> None:
    assert resolve_request_id(value) == value


@pytest.mark.parametrize(
    "value", [None, "", "x" * 129, "has space", "semi;colon", "a,b", "ünï", "a\nb", "a/b"]
)
def test_missing_or_malformed_ids_are_replaced(value: str | None) -> None:
    assert HEX32.fullmatch(resolve_request_id(value))


def test_generated_ids_differ() -> None:
    assert resolve_request_id(None) != resolve_request_id(None)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/health/", 200),
        ("get", "/api/nowhere/", 404),
        ("get", "/api/auth/me/", 401),
        ("post", "/api/health/", 405),
    ],
)
async def test_every_response_carries_the_id(method: str, path: str, status: int) -> None:
    client = AsyncClient()
    kept = await getattr(client, method)(path, headers={"X-Request-ID": "req.1:a-b"})
    assert kept.status_code == status
    assert kept["X-Request-ID"] == "req.1:a-b"
    replaced = await getattr(client, method)(path, headers={"X-Request-ID": "bad id!"})
    assert HEX32.fullmatch(replaced["X-Request-ID"])


@pytest.mark.asyncio
async def test_a_csrf_failure_carries_the_id(alice) -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(alice)
    response = await client.post(
        "/api/chat/",
        {"message": "x"},
        content_type="application/json",
        headers={"X-Request-ID": "r1"},
    )
    assert response.status_code == 403
    assert response["X-Request-ID"] == "r1"
