"""gateway/asgi/body_limit.py and gateway/limits.py: bounded bodies, streams and rates.

The body guard is driven over ASGI in-process, so a test sees exactly how many
body messages were pulled from the "client"; the rate and stream limits are
checked on both paths (Django's views and the fast path) with the service mocked.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from django.test import override_settings

from gateway import checks, limits, routes
from gateway.asgi.body_limit import BodyLimit
from gateway.asgi.fastpath import FastPath
from gateway.auth.session_users import SessionUsers
from gateway.checks import check_rate_limits
from gateway.limits import Rate, RateLimiter, StreamSlots, parse_rate, window
from lamla.asgi import django_application

from .asgi_driver import Browser, Recorder, call, scope

pytestmark = pytest.mark.usefixtures("fresh_limits")

Message = dict[str, Any]
REPLY = {"reply": "hi", "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
EVENTS = b'event: token\ndata: {"text":"a"}\n\nevent: done\ndata: {"usage":{}}\n\n'


# -- the rate parser and the window --------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("60/m", Rate(60, 60)),
        ("1/s", Rate(1, 1)),
        ("10/h", Rate(10, 3600)),
        ("5/d", Rate(5, 86400)),
        (" 7 / m ", Rate(7, 60)),
    ],
)
def test_rates_parse(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "60", "60/min", "m/60", "-1/m", "1.5/m", "60/M", "0/m"])
def test_bad_rates_are_refused_with_a_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"N/s, N/m, N/h or N/d|at least 1"):
        parse_rate(text)


@pytest.mark.parametrize(
    ("now", "index", "left"),
    [(120.0, 2, 60), (120.2, 2, 60), (179.0, 2, 1), (179.9, 2, 1), (150.5, 2, 30)],
)
def test_the_window_and_the_whole_seconds_until_it_ends(now: float, index: int, left: int) -> None:
    assert window(Rate(5, 60), now) == (index, left)


def test_a_bad_rate_setting_stops_the_gateway_naming_the_setting() -> None:
    with override_settings(GATEWAY_RATE_LIMIT_QUIZ="ten per minute"):
        (error,) = check_rate_limits()
    assert error.id == "lamla.E003"
    assert error.msg.startswith("GATEWAY_RATE_LIMIT_QUIZ: 'ten per minute' is not a rate")
    assert check_rate_limits() == []


def test_a_route_whose_bucket_has_no_rate_setting_stops_the_gateway(monkeypatch) -> None:
    monkeypatch.setattr(checks, "rate_buckets", lambda: (*routes.rate_buckets(), "summaries"))
    (error,) = check_rate_limits()
    assert error.id == "lamla.E003"
    assert error.msg.startswith("GATEWAY_RATE_LIMIT_SUMMARIES is not set")


# -- the rate limiter ----------------------------------------------------------------------------
class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def locmem(name: str) -> LocMemCache:
    cache = LocMemCache(name, {})
    cache.clear()
    return cache


@pytest.mark.asyncio
async def test_a_fixed_window_allows_n_requests_then_says_when_it_ends() -> None:
    clock = Clock(60_020.0)  # 20 s into a minute
    limiter = RateLimiter(locmem("t-window"), clock=clock)
    rate = Rate(3, 60)
    assert [await limiter.hit("chat", 1, rate) for _ in range(3)] == [None, None, None]
    assert await limiter.hit("chat", 1, rate) == 40
    clock.now += 39.5
    assert await limiter.hit("chat", 1, rate) == 1  # ceil(0.5)
    clock.now += 0.5  # the next window
    assert await limiter.hit("chat", 1, rate) is None


@pytest.mark.asyncio
async def test_users_and_buckets_count_apart() -> None:
    limiter = RateLimiter(locmem("t-apart"), clock=Clock(60.0))
    rate = Rate(1, 60)
    assert await limiter.hit("chat", 1, rate) is None
    assert await limiter.hit("chat", 1, rate) is not None
    assert await limiter.hit("chat", 2, rate) is None
    assert await limiter.hit("quiz", 1, rate) is None


@pytest.mark.asyncio
async def test_an_in_process_cache_is_called_without_a_thread_hop() -> None:
    cache = locmem("t-sync")

    async def no_async(*args: object, **kwargs: object) -> object:
        raise AssertionError("the async API (a sync_to_async thread hop) was used")

    cache.aincr = no_async  # type: ignore[method-assign]
    cache.aadd = no_async  # type: ignore[method-assign]
    limiter = RateLimiter(cache)
    assert limiter.in_process
    assert await limiter.hit("chat", 1, Rate(5, 60)) is None


@pytest.mark.asyncio
async def test_another_cache_is_called_through_its_async_api() -> None:
    class Remote(LocMemCache):
        """Stands in for Redis: the sync API must not be called on the loop."""

        def incr(self, *args: Any, **kwargs: Any) -> int:
            raise AssertionError("sync call on the event loop")

        def add(self, *args: Any, **kwargs: Any) -> bool:
            raise AssertionError("sync call on the event loop")

        async def aincr(self, key: str, delta: int = 1, version: int | None = None) -> int:
            return LocMemCache.incr(self, key, delta, version)

        async def aadd(self, key: str, value: Any, *args: Any) -> bool:
            return LocMemCache.add(self, key, value, *args)

    limiter = RateLimiter(Remote("t-remote", {}), clock=Clock(0.5))
    limiter.in_process = False
    rate = Rate(2, 1)
    assert [await limiter.hit("quiz", 1, rate) for _ in range(3)] == [None, None, 1]


# -- stream slots --------------------------------------------------------------------------------
def test_stream_slots_count_per_user_and_release_once() -> None:
    slots = StreamSlots()
    first, second = slots.acquire("a", 2), slots.acquire("a", 2)
    assert first is not None
    assert second is not None
    assert slots.acquire("a", 2) is None
    assert slots.acquire("b", 2) is not None
    first.release()
    first.release()  # idempotent: one stream gives back one slot
    assert slots.open_streams("a") == 1
    assert slots.acquire("a", 2) is not None
    assert slots.acquire("a", 2) is None


# -- the body guard ------------------------------------------------------------------------------
class Client:
    """The client side of one ASGI request: body messages, and how many were pulled."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.pulled < len(self.chunks):
            self.pulled += 1
            more = self.pulled < len(self.chunks)
            return {"type": "http.request", "body": self.chunks[self.pulled - 1], "more_body": more}
        raise AssertionError("pulled past the end of the body")

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return dict(start["headers"])


class Reader:
    """An app that reads the whole body it is given, then answers 200 with its size."""

    def __init__(self) -> None:
        self.body = b""

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % len(self.body)})


def http_scope(path: str = "/api/chat/", length: int | None = None) -> Message:
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


@pytest.mark.asyncio
async def test_a_declared_length_over_the_limit_reads_nothing_and_closes() -> None:
    app = Reader()
    client = Client([b"x" * 100] * 5)
    await BodyLimit(app, default=100)(http_scope(length=500), client.receive, client.send)
    assert client.pulled == 0
    assert app.body == b""
    assert client.headers()[b"connection"] == b"close"


@pytest.mark.asyncio
async def test_a_declared_length_within_the_limit_passes_untouched() -> None:
    app = Reader()
    client = Client([b"x" * 50, b"y" * 50])
    await BodyLimit(app, default=100)(http_scope(length=100), client.receive, client.send)
    assert app.body == b"x" * 50 + b"y" * 50
    assert b"connection" not in client.headers()


@pytest.mark.asyncio
async def test_a_body_without_length_is_cut_one_byte_past_the_limit() -> None:
    app = Reader()
    client = Client([b"x" * 60] * 100)
    await BodyLimit(app, default=100)(http_scope(), client.receive, client.send)
    assert len(app.body) == 101  # the view counts it and refuses it
    assert client.pulled == 2  # and the rest is never read
    assert client.headers()[b"connection"] == b"close"


@pytest.mark.parametrize("sizes", [[100], [40, 60], [101]])
@pytest.mark.asyncio
async def test_a_body_without_length_that_ends_by_itself_is_untouched(sizes: list[int]) -> None:
    app = Reader()
    client = Client([b"x" * size for size in sizes])
    await BodyLimit(app, default=100)(http_scope(), client.receive, client.send)
    assert len(app.body) == sum(sizes)
    assert b"connection" not in client.headers()


@pytest.mark.asyncio
async def test_each_path_has_its_limit() -> None:
    app = Reader()
    client = Client([b"x" * 150])
    guard = BodyLimit(app, default=100, limits={"/api/chat/file/": 200})
    await guard(http_scope("/api/chat/file/", length=150), client.receive, client.send)
    assert len(app.body) == 150


@pytest.mark.asyncio
async def test_after_a_cut_the_app_hears_a_disconnect_only_once_it_answered() -> None:
    seen: list[str] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        assert (await receive())["more_body"] is False
        waiter = asyncio.ensure_future(receive())  # Django's listen_for_disconnect
        await asyncio.sleep(0)
        seen.append("waiting" if not waiter.done() else "early")
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        seen.append((await waiter)["type"])

    client = Client([b"x"] * 10)
    await BodyLimit(app, default=1)(http_scope(length=10), client.receive, client.send)
    assert seen == ["waiting", "http.disconnect"]
    assert client.pulled == 0


@pytest.mark.asyncio
async def test_other_scopes_pass_through() -> None:
    calls: list[str] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    await BodyLimit(app, default=1)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert calls == ["lifespan"]


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "django"])
@pytest.mark.asyncio
async def test_the_gateway_refuses_an_endless_json_body_with_djangos_413(
    browser: Browser, service: Any, fast_path: bool
) -> None:
    from lamla.asgi import _body_limits

    inner = FastPath(django_application) if fast_path else django_application
    app = _body_limits(inner)
    client = Client([b'{"message": "' + b"x" * 65536] + [b"x" * 65536] * 1000)
    request = scope("POST", "/api/chat/", browser.headers(x_request_id="rid-413"))
    await app(request, client.receive, client.send)
    start = next(m for m in client.sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in client.sent if m["type"] == "http.response.body")
    assert start["status"] == 413, body
    assert json.loads(body)["status"] == 413
    response_headers = client.headers()
    assert response_headers[b"Content-Type"] == b"application/problem+json"
    assert response_headers[b"X-Request-ID"] == b"rid-413"
    assert response_headers[b"X-Content-Type-Options"] == b"nosniff"
    assert response_headers[b"connection"] == b"close"
    assert client.pulled <= 17  # 1 MiB + 1 byte in 64 KiB messages, then nothing more
    assert not service.calls


@pytest.fixture
def browser(alice) -> Browser:
    from django.test import Client as DjangoClient

    client = DjangoClient()
    client.force_login(alice)
    return Browser(client.cookies[settings.SESSION_COOKIE_NAME].value)


# -- rate limits and stream slots on both paths --------------------------------------------------
def mock_service(service: Any) -> None:
    service.post("/chatbot/").mock(return_value=httpx.Response(200, json=REPLY))
    service.post("/quiz/").mock(return_value=httpx.Response(200, json={"questions": []}))
    service.post("/chatbot/stream/").mock(
        return_value=httpx.Response(
            200, content=EVENTS, headers={"content-type": "text/event-stream"}
        )
    )


@override_settings(GATEWAY_RATE_LIMIT_CHAT="2/m", GATEWAY_RATE_LIMIT_QUIZ="1/m")
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "django"])
@pytest.mark.asyncio
async def test_rate_limits_refuse_with_429_before_the_service(
    browser: Browser, service: Any, fast_path: bool
) -> None:
    mock_service(service)
    django_app = Recorder(django_application)
    app = (
        FastPath(django_app, sessions=SessionUsers(ttl=5.0, max_size=10))
        if fast_path
        else django_app
    )
    body = b'{"message": "hi"}'
    statuses = [
        (await call(app, "POST", path, browser.headers(), body)).status
        for path in ("/api/chat/", "/api/chat/stream/")
    ]
    assert statuses == [200, 200]
    origin = "http://localhost:3000"
    refused = await call(app, "POST", "/api/chat/", browser.headers(origin=origin), body)
    assert refused.status == 429
    problem = json.loads(refused.body)
    assert problem["status"] == 429
    assert problem["title"] == "Too Many Requests"
    headers = {name.lower(): value for name, value in refused.headers}
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["access-control-allow-origin"] == origin
    assert "x-request-id" in headers
    assert service.calls.call_count == 2
    # Quiz counts apart.
    assert (await call(app, "POST", "/api/quiz/generate/", browser.headers(), body)).status == 200
    assert (await call(app, "POST", "/api/quiz/generate/", browser.headers(), body)).status == 429
    assert service.calls.call_count == 3
    if fast_path:
        assert django_app.calls == 0, "the fast path answers its 429s itself"


@override_settings(GATEWAY_MAX_STREAMS_PER_USER=1)
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "django"])
@pytest.mark.asyncio
async def test_a_stream_slot_is_held_until_the_stream_ends(
    browser: Browser, service: Any, fast_path: bool, alice
) -> None:
    mock_service(service)
    app = FastPath(django_application) if fast_path else django_application
    body = b'{"message": "hi"}'
    # A stream held open: the driver's client never disconnects until told.
    first_done = asyncio.Event()
    gate = asyncio.Event()

    async def held_events() -> Any:
        yield EVENTS[:30]
        await gate.wait()
        yield EVENTS[30:]

    service.post("/chatbot/stream/").mock(
        side_effect=[
            httpx.Response(
                200, content=held_events(), headers={"content-type": "text/event-stream"}
            ),
            httpx.Response(200, content=EVENTS, headers={"content-type": "text/event-stream"}),
        ]
    )

    async def first() -> None:
        await call(app, "POST", "/api/chat/stream/", browser.headers(), body)
        first_done.set()

    task = asyncio.ensure_future(first())
    for _ in range(200):  # until the first stream holds its slot (bounded)
        if limits.stream_slots.open_streams(alice.pk):
            break
        await asyncio.sleep(0.01)
    assert limits.stream_slots.open_streams(alice.pk) == 1
    refused = await call(app, "POST", "/api/chat/stream/", browser.headers(), body)
    assert refused.status == 429, refused.body
    assert dict(refused.headers)["Retry-After"] == "1"
    assert service.calls.call_count == 1
    gate.set()
    await asyncio.wait_for(task, 5)
    assert limits.stream_slots.open_streams(alice.pk) == 0
    again = await call(app, "POST", "/api/chat/stream/", browser.headers(), body)
    assert again.status == 200
    assert limits.stream_slots.open_streams(alice.pk) == 0
