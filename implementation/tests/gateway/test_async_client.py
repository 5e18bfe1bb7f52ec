"""gateway/upstream/client.py: one client per process and loop, no cookies kept."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx
from django.conf import settings
from django.test import override_settings

from gateway.upstream import client as async_client
from gateway.upstream.client import aclose_clients, get_client
from gateway.upstream.transport import AiohttpTransport

from .conftest import SERVICE_URL


async def _use_client() -> tuple[int, httpx.AsyncClient]:
    client = get_client()
    assert get_client() is client, "a second call on the same loop made a new client"
    response = await client.get("/health")
    return response.status_code, client


def test_each_event_loop_gets_its_own_working_client() -> None:
    with respx.mock(base_url=SERVICE_URL, using="httpx") as router:
        router.get("/health").mock(return_value=httpx.Response(200, json={"status": "ok"}))
        first_status, first = asyncio.run(_use_client())
        second_status, second = asyncio.run(_use_client())
    assert (first_status, second_status) == (200, 200)
    assert first is not second, "the client of a closed loop was reused"
    assert first not in async_client._clients.values(), "a closed loop's client is still kept"
    asyncio.run(_close_all_left())


async def _close_all_left() -> None:
    # Clients of the loops above were never closed (their loops are gone); the
    # registry forgets them, and this loop has none.
    await aclose_clients()
    assert not async_client._clients


@pytest.mark.asyncio
async def test_aclose_clients_closes_the_loops_client() -> None:
    client = get_client()
    await aclose_clients()
    assert client.is_closed
    replacement = get_client()
    assert replacement is not client
    assert not replacement.is_closed
    await aclose_clients()


@pytest.mark.asyncio
async def test_client_is_configured_from_settings() -> None:
    client = get_client()
    try:
        assert str(client.base_url).rstrip("/") == SERVICE_URL
        assert client.timeout == httpx.Timeout(
            connect=settings.SERVICE_CONNECT_TIMEOUT,
            read=settings.SERVICE_READ_TIMEOUT,
            write=settings.SERVICE_WRITE_TIMEOUT,
            pool=settings.SERVICE_POOL_TIMEOUT,
        )
        assert client.follow_redirects is False
        assert client.trust_env is False
        transport = client._transport  # type: ignore[attr-defined]
        assert settings.SERVICE_TRANSPORT == "aiohttp"
        assert isinstance(transport, AiohttpTransport)
        assert transport._limits == httpx.Limits(
            max_connections=settings.SERVICE_MAX_CONNECTIONS,
            max_keepalive_connections=settings.SERVICE_MAX_KEEPALIVE,
            keepalive_expiry=settings.SERVICE_KEEPALIVE_EXPIRY,
        )
        assert settings.SERVICE_KEEPALIVE_EXPIRY < 5.0
    finally:
        await aclose_clients()


@pytest.mark.asyncio
@override_settings(SERVICE_TRANSPORT="httpcore")
async def test_httpcore_transport_is_configured_from_settings() -> None:
    client = get_client()
    try:
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert pool._max_connections == settings.SERVICE_MAX_CONNECTIONS
        assert pool._max_keepalive_connections == settings.SERVICE_MAX_KEEPALIVE
        assert pool._keepalive_expiry == settings.SERVICE_KEEPALIVE_EXPIRY < 5.0
    finally:
        await aclose_clients()


@pytest.mark.asyncio
async def test_cookies_set_by_the_service_are_never_kept(service) -> None:
    route = service.post("/chatbot/").mock(
        return_value=httpx.Response(
            200,
            json={"reply": "x"},
            headers=[("set-cookie", "session=alice; Path=/"), ("set-cookie", "b=2")],
        )
    )
    client = get_client()
    await client.post("/chatbot/", json={})
    await client.post("/chatbot/", json={})
    assert "cookie" not in route.calls.last.request.headers
    assert len(client.cookies) == 0
    client.cookies.set("forced", "1")  # even a direct set is refused
    assert len(client.cookies) == 0
