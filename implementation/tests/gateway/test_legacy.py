"""The seed's old sync views at /api/legacy/ (apps/chatbot/views.py), the service mocked.

Under WSGI (the perf baseline's gunicorn) through Django's sync test Client;
under ASGI in-process through tests/gateway/asgi_driver.py. Either way they
must keep the async routes' rules: the per-user limits (LIMIT-3/4), the
X-Forwarded-For rule (SEC-4) and the header filters both ways (GW-PROXY-3/4).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from django.conf import settings
from django.test import Client, override_settings

from gateway import limits
from lamla.asgi import django_application

from .asgi_driver import Browser, Message, call
from .conftest import SECRET, SERVICE_URL
from .test_signing import expected_signature

pytestmark = pytest.mark.usefixtures("fresh_limits")

CHAT, STREAM = "/api/legacy/chat/", "/api/legacy/chat/stream/"
#: Each legacy route, its async twin and the service path both proxy to.
TWINS = [(CHAT, "/api/chat/", "/chatbot/"), (STREAM, "/api/chat/stream/", "/chatbot/stream/")]
REPLY = {"reply": "r", "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
FIRST = b'event: token\ndata: {"text":"a"}\n\n'
DONE = b'event: done\ndata: {"usage":{}}\n\n'
SSE = {"content-type": "text/event-stream"}
BODY = b'{"message": "m"}'


@pytest.fixture
def legacy_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def browser(legacy_client: Client) -> Browser:
    return Browser(legacy_client.cookies[settings.SESSION_COOKIE_NAME].value)


def answer(upstream: str, **headers: str) -> httpx.Response:
    """The service's happy answer on ``upstream``."""
    if upstream == "/chatbot/stream/":
        return httpx.Response(200, content=FIRST + DONE, headers={**SSE, **headers})
    return httpx.Response(200, json=REPLY, headers=headers)


def post(client: Client, path: str, **extra: Any) -> Any:
    return client.post(path, BODY, content_type="application/json", **extra)


def content(response: Any) -> bytes:
    """The whole body; a streamed one is read to its end (the test client then closes it)."""
    return b"".join(response.streaming_content) if response.streaming else response.content


def assert_429(response: Any, *, most: int) -> None:
    assert response.status_code == 429, content(response)
    assert response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content)["status"] == 429
    assert 1 <= int(response["Retry-After"]) <= most


def received(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


async def until(condition: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):  # bounded polling
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {seconds} s: {what}")


# -- routing -------------------------------------------------------------------------------------
def test_legacy_routes_are_404_problems_unless_enabled(legacy_client, alice) -> None:
    import lamla.urls

    name = "legacy_off_urls"
    spec = importlib.util.spec_from_file_location(name, lamla.urls.__file__)
    assert spec is not None
    assert spec.loader is not None
    off = importlib.util.module_from_spec(spec)
    with override_settings(GATEWAY_LEGACY_VIEWS=False):
        spec.loader.exec_module(off)  # the URLconf as a gateway with the default reads it
    sys.modules[name] = off
    try:
        with (
            override_settings(ROOT_URLCONF=name),
            respx.mock(base_url=SERVICE_URL, using="httpx") as router,
        ):
            responses = [post(legacy_client, path) for path in (CHAT, STREAM)]
    finally:
        del sys.modules[name]
    for response in responses:
        assert response.status_code == 404
        assert response["Content-Type"] == "application/problem+json"
    assert not router.calls


def test_legacy_anonymous_is_401() -> None:
    response = Client().post("/api/legacy/chat/", {"message": "m"}, content_type="application/json")
    assert response.status_code == 401


# -- headers (SEC-4, GW-PROXY-3/4) ---------------------------------------------------------------
@pytest.mark.parametrize(("path", "twin", "upstream"), TWINS)
def test_legacy_views_send_x_forwarded_for_from_the_connection_never_the_client(
    legacy_client, alice, path: str, twin: str, upstream: str
) -> None:
    with respx.mock(base_url=SERVICE_URL, using="httpx") as router:
        route = router.post(upstream).mock(return_value=answer(upstream))
        response = post(
            legacy_client,
            path,
            headers={
                "X-Forwarded-For": "198.51.100.66",
                "Forwarded": "for=198.51.100.66",
                "X-Internal-Secret": "forged",
                "X-User-Id": "999",
            },
            REMOTE_ADDR="203.0.113.7",  # what gunicorn (or the edge) says the peer is
        )
        assert response.status_code == 200
        content(response)
    sent = route.calls.last.request
    assert sent.headers.get_list("x-forwarded-for") == ["203.0.113.7"]
    assert "forwarded" not in sent.headers
    assert sent.headers.get_list("x-internal-secret") == [SECRET]
    assert sent.headers.get_list("x-user-id") == [str(alice.pk)]


@pytest.mark.parametrize(("path", "twin", "upstream"), TWINS)
@pytest.mark.asyncio
async def test_legacy_views_send_and_return_the_same_headers_as_their_async_twins(
    browser: Browser, service: Any, path: str, twin: str, upstream: str
) -> None:
    hostile = {
        "set-cookie": "sid=theirs",
        "x-internal-secret": SECRET,
        "x-user-id": "1",
        "connection": "x-hop",
        "x-hop": "1",
        "server": "uvicorn",
        "content-language": "en",
    }
    route = service.post(upstream).mock(side_effect=lambda request: answer(upstream, **hostile))
    client_headers = browser.headers(
        x_request_id="rid-twins",
        accept="text/event-stream, application/json",
        authorization="Bearer x",
        x_forwarded_for="198.51.100.66",
        x_internal_secret="forged",
    )
    results = [
        await call(django_application, "POST", one, client_headers, BODY) for one in (twin, path)
    ]
    assert [result.status for result in results] == [200, 200], results[1].body
    assert results[0].body == results[1].body
    assert results[0].header_set() == results[1].header_set()
    async_sent, legacy_sent = (call_.request for call_ in route.calls)
    assert sorted(legacy_sent.headers.multi_items()) == sorted(async_sent.headers.multi_items())
    assert legacy_sent.headers["x-forwarded-for"] == "127.0.0.1"  # the driver's peer
    returned = {name.lower() for name, _ in results[1].headers}
    assert not returned & {"set-cookie", "x-internal-secret", "x-user-id", "x-hop", "server"}


def test_legacy_views_sign_in_hmac_mode(legacy_client, alice) -> None:
    from apps.chatbot import views

    body = b'{"message": "m"}'
    with override_settings(SERVICE_AUTH_MODE="hmac"):
        if views._client is not None:  # built once per process, from the settings
            views._client.close()
        views._client = None
        try:
            with respx.mock(base_url=SERVICE_URL) as router:
                route = router.post("/chatbot/").mock(
                    return_value=httpx.Response(200, json={"reply": "r"})
                )
                response = legacy_client.post(
                    "/api/legacy/chat/", body, content_type="application/json"
                )
        finally:
            if views._client is not None:
                views._client.close()
            views._client = None
    assert response.status_code == 200, response.content
    sent = route.calls.last.request
    assert "x-internal-secret" not in sent.headers
    timestamp = sent.headers["x-internal-timestamp"]
    assert sent.headers["x-internal-signature"] == expected_signature(
        "POST", "/chatbot/", timestamp, str(alice.pk), body
    )


# -- the rate limit (LIMIT-4) --------------------------------------------------------------------
@override_settings(GATEWAY_RATE_LIMIT_CHAT="2/h")
@pytest.mark.parametrize(("path", "twin", "upstream"), TWINS)
def test_legacy_rate_limit_answers_429_without_contacting_the_service(
    legacy_client, path: str, twin: str, upstream: str
) -> None:
    with respx.mock(base_url=SERVICE_URL, using="httpx") as router:
        route = router.post(upstream).mock(side_effect=lambda request: answer(upstream))
        for _ in range(2):
            response = post(legacy_client, path)
            assert response.status_code == 200
            content(response)
        refused = post(legacy_client, path)
    assert_429(refused, most=3600)
    assert route.call_count == 2


# -- the stream cap (LIMIT-3) --------------------------------------------------------------------
@override_settings(GATEWAY_MAX_STREAMS_PER_USER=2)
def test_legacy_stream_cap_refuses_the_next_stream_until_one_ends_or_its_client_leaves(
    legacy_client, alice
) -> None:
    with respx.mock(base_url=SERVICE_URL, using="httpx") as router:
        route = router.post("/chatbot/stream/").mock(
            side_effect=lambda request: httpx.Response(200, content=FIRST + DONE, headers=SSE)
        )
        first, second = post(legacy_client, STREAM), post(legacy_client, STREAM)
        assert [first.status_code, second.status_code] == [200, 200]
        assert limits.stream_slots.open_streams(alice.pk) == 2  # both relays hold a slot
        refused = post(legacy_client, STREAM)
        assert_429(refused, most=1)
        assert route.call_count == 2
        # One stream read to its end: its slot comes back.
        assert content(first) == FIRST + DONE
        assert limits.stream_slots.open_streams(alice.pk) == 1
        # One whose client left before reading a byte: the server closes the response.
        second.close()
        assert limits.stream_slots.open_streams(alice.pk) == 0
        third = post(legacy_client, STREAM)
        assert third.status_code == 200
        assert content(third) == FIRST + DONE
    assert limits.stream_slots.open_streams(alice.pk) == 0


def test_legacy_stream_relays_and_ends_broken_streams_with_an_error(legacy_client, alice) -> None:
    def body():
        yield b'event: token\ndata: {"text":"a"}\n\nevent: tok'
        raise httpx.RemoteProtocolError("peer closed connection")

    with respx.mock(base_url=SERVICE_URL) as router:
        router.post("/chatbot/stream/").mock(
            return_value=httpx.Response(
                200, content=body(), headers={"content-type": "text/event-stream"}
            )
        )
        response = legacy_client.post(
            "/api/legacy/chat/stream/", {"message": "m"}, content_type="application/json"
        )
        stream = b"".join(response.streaming_content)
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    assert stream.startswith(b'event: token\ndata: {"text":"a"}\n\nevent: error\ndata: ')
    assert stream.count(b"event:") == 2
    assert limits.stream_slots.open_streams(alice.pk) == 0


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503, json={"detail": "down"}),
        httpx.Response(200, json=REPLY),  # not an event stream
        httpx.ConnectError("refused"),
    ],
    ids=["service-5xx", "not-a-stream", "unreachable"],
)
def test_a_legacy_stream_that_never_started_gives_its_slot_back(
    legacy_client, alice, failure: httpx.Response | Exception
) -> None:
    with respx.mock(base_url=SERVICE_URL, using="httpx") as router:
        router.post("/chatbot/stream/").mock(side_effect=[failure])
        response = post(legacy_client, STREAM)
    assert response.status_code == 502
    assert limits.stream_slots.open_streams(alice.pk) == 0


def test_stream_slots_keep_count_when_threads_take_and_give_them_back() -> None:
    """The sync views take and give back slots from several threads at once."""
    slots, limit, threads, rounds = limits.StreamSlots(), 3, 8, 20_000
    peak, failures = 0, []
    start = threading.Barrier(threads)

    def worker() -> None:
        nonlocal peak
        start.wait()
        try:
            for _ in range(rounds):
                slot = slots.acquire("u", limit)
                if slot is not None:
                    peak = max(peak, slots.open_streams("u"))
                    slot.release()
        except Exception as exc:  # a lost update shows as a KeyError in release()
            failures.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        workers = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert failures == []
    assert peak <= limit
    assert slots.open_streams("u") == 0


# -- under ASGI ----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_legacy_stream_under_asgi_is_relayed_chunk_by_chunk(browser: Browser, alice) -> None:
    held = threading.Event()

    def body() -> Iterator[bytes]:  # runs in the worker thread that pulls the relay
        yield FIRST
        held.wait(10)
        yield DONE

    messages: list[Message] = []
    with respx.mock(base_url=SERVICE_URL, using="httpx") as router:
        router.post("/chatbot/stream/").mock(
            return_value=httpx.Response(200, content=body(), headers=SSE)
        )
        task = asyncio.ensure_future(
            call(django_application, "POST", STREAM, browser.headers(), BODY, messages=messages)
        )
        try:
            await until(lambda: FIRST in received(messages), "the first event, upstream held")
            assert DONE not in received(messages)
            assert limits.stream_slots.open_streams(alice.pk) == 1
        finally:
            held.set()
        result = await asyncio.wait_for(task, 5)
    assert result.status == 200
    assert result.body == FIRST + DONE
    headers = dict(result.header_set())
    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert limits.stream_slots.open_streams(alice.pk) == 0


@override_settings(GATEWAY_MAX_STREAMS_PER_USER=1, GATEWAY_RATE_LIMIT_CHAT="4/h")
@pytest.mark.asyncio
async def test_legacy_and_async_routes_count_in_the_same_limits(
    browser: Browser, service: Any, alice
) -> None:
    held = threading.Event()

    def body() -> Iterator[bytes]:
        yield FIRST
        held.wait(10)
        yield DONE

    service.post("/chatbot/stream/").mock(
        side_effect=[httpx.Response(200, content=body(), headers=SSE)]
    )
    chat = service.post("/chatbot/").mock(side_effect=lambda request: answer("/chatbot/"))
    messages: list[Message] = []
    task = asyncio.ensure_future(
        call(django_application, "POST", STREAM, browser.headers(), BODY, messages=messages)
    )
    try:
        await until(lambda: FIRST in received(messages), "the legacy stream's first event")
        # The legacy stream holds the user's one slot: the async stream is refused.
        refused = await call(
            django_application, "POST", "/api/chat/stream/", browser.headers(), BODY
        )
        assert refused.status == 429
        assert dict(refused.header_set())["retry-after"] == "1"
    finally:
        held.set()
    await asyncio.wait_for(task, 5)
    assert limits.stream_slots.open_streams(alice.pk) == 0
    # Two requests counted so far in the chat bucket of 4; two more, one on each path.
    for path in ("/api/chat/", CHAT):
        assert (await call(django_application, "POST", path, browser.headers(), BODY)).status == 200
    for path in (CHAT, "/api/chat/"):
        over = await call(django_application, "POST", path, browser.headers(), BODY)
        assert over.status == 429, path
    assert chat.call_count == 2


class HeldConnection:
    """A service connection that sends one event, then holds: a socket pair, as httpcore's.

    The relay's thread blocks reading the gateway's end until that end is shut
    down (the gateway's way out) or the service's end closes (the test's).
    """

    def __init__(self) -> None:
        self.gateway_end, self.service_end = socket.socketpair()

    def get_extra_info(self, info: str) -> object:  # httpcore's network stream API
        return self.gateway_end if info == "socket" else None

    def body(self) -> Iterator[bytes]:
        yield FIRST
        if not self.gateway_end.recv(1):
            raise httpx.RemoteProtocolError("peer closed connection")

    def close(self) -> None:
        self.service_end.close()  # wakes a reader still blocked, if the gateway never did
        self.gateway_end.close()


@pytest.mark.asyncio
async def test_legacy_stream_under_asgi_gives_back_its_slot_when_the_client_leaves(
    browser: Browser, alice
) -> None:
    held = HeldConnection()
    gone = asyncio.Event()
    messages: list[Message] = []
    try:
        with respx.mock(base_url=SERVICE_URL, using="httpx") as router:
            router.post("/chatbot/stream/").mock(
                return_value=httpx.Response(
                    200, content=held.body(), headers=SSE, extensions={"network_stream": held}
                )
            )
            task = asyncio.ensure_future(
                call(
                    django_application,
                    "POST",
                    STREAM,
                    browser.headers(),
                    BODY,
                    disconnect=gone,
                    messages=messages,
                )
            )
            await until(lambda: FIRST in received(messages), "the first event")
            assert limits.stream_slots.open_streams(alice.pk) == 1
            gone.set()  # the client leaves while the service holds the stream
            await asyncio.wait_for(task, 5)
        assert limits.stream_slots.open_streams(alice.pk) == 0
    finally:
        held.close()
