"""gateway/asgi/fastpath.py: the ASGI fast path answers exactly as Django would.

Every case runs twice over ASGI, once through the fast path and once through
Django alone, and the two answers (status, headers, body) must be equal;
the fast path must serve the happy path without Django and hand everything
else to it: a refusal silently, an unexpected exception counted and logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from django.conf import settings
from django.test import Client, override_settings

from gateway import limits
from gateway.asgi import fastpath
from gateway.asgi.fastpath import FastPath
from gateway.auth.session_users import SessionUsers
from lamla.asgi import django_application

from .asgi_driver import HOST, Browser, Recorder, Result, call, scope
from .conftest import SECRET

pytestmark = pytest.mark.asyncio

REPLY = {"reply": "hi", "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
EVENTS = b'event: token\ndata: {"text":"a"}\n\nevent: done\ndata: {"usage":{}}\n\n'
BODY = b'{"message": "h\\u00e9llo",  "history": []}'
ALLOWED_ORIGIN = "http://localhost:3000"
RID = "parity-rid-1"


def login(user) -> Browser:
    client = Client()
    client.force_login(user)
    return Browser(client.cookies[settings.SESSION_COOKIE_NAME].value)


@pytest.fixture(autouse=True)
def fresh_limits() -> Iterator[None]:
    """Many requests as alice: no test may run into a rate limit left by another."""
    limits.rate_limiter().cache.clear()
    yield
    limits.rate_limiter().cache.clear()


@pytest.fixture
def browser(alice) -> Browser:
    return login(alice)


@pytest.fixture
def django_app() -> Recorder:
    return Recorder(django_application)


@pytest.fixture
def fast(django_app: Recorder) -> FastPath:
    return FastPath(django_app, sessions=SessionUsers(ttl=5.0, max_size=100))


def mock_success(service) -> None:
    service.post("/chatbot/").mock(return_value=httpx.Response(200, json=REPLY))
    service.post("/quiz/").mock(return_value=httpx.Response(200, json={"questions": []}))

    def stream(request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            yield EVENTS[:10]
            yield EVENTS[10:]

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    service.post("/chatbot/stream/").mock(side_effect=stream)


async def both(
    fast: FastPath, django_app: Recorder, method: str, path: str, headers, body=b""
) -> tuple[Result, Result]:
    through_fast = await call(fast, method, path, headers, body)
    through_django = await call(django_app.app, method, path, headers, body)
    return through_fast, through_django


def assert_same(through_fast: Result, through_django: Result) -> None:
    assert through_fast.status == through_django.status, (through_fast, through_django)
    assert through_fast.body == through_django.body
    assert through_fast.header_set() == through_django.header_set()


def fast_path_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == fastpath.__name__]


def assert_handed_over_as_a_refusal(fast: FastPath, caplog: pytest.LogCaptureFixture) -> None:
    """A refusal is Django's to answer: not a fault of the fast path's, so not counted or logged."""
    assert not fast.fallbacks, "a refusal was counted as an unexpected fallback"
    assert not fast_path_records(caplog), "the fast path logged a refusal"


# -- the happy path ---------------------------------------------------------------------------
async def test_a_valid_chat_is_served_without_django(
    fast: FastPath, django_app: Recorder, browser: Browser, service, alice
) -> None:
    route = service.post("/chatbot/").mock(return_value=httpx.Response(200, json=REPLY))
    headers = browser.headers(x_internal_secret="forged", x_user_id="999", x_request_id=RID)
    result = await call(fast, "POST", "/api/chat/", headers, BODY)
    assert result.status == 200, result.body
    assert json.loads(result.body) == REPLY
    assert django_app.calls == 0, "the fast path handed a valid request to Django"
    sent = route.calls.last.request
    assert sent.content == BODY
    assert sent.headers.get_list("x-internal-secret") == [SECRET]
    assert sent.headers.get_list("x-user-id") == [str(alice.pk)]
    assert sent.headers["x-request-id"] == RID
    assert "cookie" not in sent.headers


@pytest.mark.parametrize(
    ("path", "extra", "upstream"),
    [
        pytest.param("/api/chat/", {}, None, id="chat"),
        pytest.param("/api/chat/", {"origin": ALLOWED_ORIGIN}, None, id="chat-cors"),
        pytest.param("/api/chat/stream/", {}, None, id="stream"),
        pytest.param("/api/chat/stream/", {"origin": ALLOWED_ORIGIN}, None, id="stream-cors"),
        pytest.param("/api/quiz/generate/", {}, None, id="quiz"),
        pytest.param("/api/chat/", {}, httpx.Response(500, json={"detail": "x"}), id="502"),
        pytest.param("/api/chat/", {}, httpx.PoolTimeout("full"), id="503"),
        pytest.param(
            "/api/chat/",
            {"origin": ALLOWED_ORIGIN},
            httpx.Response(
                422,
                json={"type": "about:blank", "title": "t", "status": 422, "detail": "d"},
                headers={"content-type": "application/problem+json", "set-cookie": "a=b"},
            ),
            id="422-relayed",
        ),
    ],
)
async def test_answers_and_headers_are_those_of_django(
    fast: FastPath,
    django_app: Recorder,
    browser: Browser,
    service,
    path: str,
    extra: dict[str, str],
    upstream: object,
) -> None:
    mock_success(service)
    if isinstance(upstream, Exception):
        service.post("/chatbot/").mock(side_effect=upstream)
    elif upstream is not None:
        service.post("/chatbot/").mock(return_value=upstream)
    headers = browser.headers(x_request_id=RID, **extra)
    through_fast, through_django = await both(fast, django_app, "POST", path, headers, BODY)
    assert django_app.calls == 0, "the fast path handed the request to Django"
    assert_same(through_fast, through_django)
    names = {name.lower() for name, _ in through_fast.headers}
    expected = {"x-content-type-options", "x-frame-options", "referrer-policy", "vary"}
    assert expected | {"cross-origin-opener-policy", "x-request-id"} <= names
    if extra:
        assert ("access-control-allow-origin", ALLOWED_ORIGIN) in through_fast.header_set()


# -- everything else goes to Django -------------------------------------------------------------
def _too_large() -> bytes:
    return json.dumps({"message": "x" * settings.MAX_JSON_BODY}).encode()


def _split(body: bytes, at: int) -> list[bytes]:
    return [body[:at], body[at:]]


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key != name}


# name -> browser -> (headers, body, query string)
HANDED_OVER = {
    "anonymous": lambda b: ({**b.headers(), "cookie": f"csrftoken={b.csrf_secret}"}, BODY, b""),
    "unknown-session": lambda b: (
        {**b.headers(), "cookie": f"csrftoken={b.csrf_secret}; sessionid=nosuchsession123456"},
        BODY,
        b"",
    ),
    "csrf-missing": lambda b: (_without(b.headers(), "x-csrftoken"), BODY, b""),
    "csrf-wrong": lambda b: (b.headers(x_csrftoken="A" * 64), BODY, b""),
    "csrf-no-cookie": lambda b: (
        {**b.headers(), "cookie": f"sessionid={b.session_key}"},
        BODY,
        b"",
    ),
    "untrusted-origin": lambda b: (b.headers(origin="http://evil.example"), BODY, b""),
    "text-plain": lambda b: (b.headers(content_type="text/plain"), BODY, b""),
    "no-content-type": lambda b: (_without(b.headers(), "content-type"), BODY, b""),
    "invalid-json": lambda b: (b.headers(), b'{"message": ', b""),
    "json-array": lambda b: (b.headers(), b"[1, 2]", b""),
    "empty-body": lambda b: (b.headers(), b"", b""),
    "too-large": lambda b: (b.headers(), _too_large(), b""),
    "too-large-chunked": lambda b: (b.headers(), _split(_too_large(), 600_000), b""),
    "disallowed-host": lambda b: (b.headers(host="evil.example"), BODY, b""),
    "undecodable-query": lambda b: (b.headers(), BODY, b"q=\xff"),
    # Refusals raised while the CSRF check reads request.POST, and by CommonMiddleware.
    "multipart-without-boundary": lambda b: (
        b.headers(content_type="multipart/form-data"),
        BODY,
        b"",
    ),
    "form-not-utf8": lambda b: (
        b.headers(content_type="application/x-www-form-urlencoded; charset=latin-1"),
        b"a=1",
        b"",
    ),
    "too-many-form-fields": lambda b: (
        b.headers(content_type="application/x-www-form-urlencoded"),
        b"&".join([b"a=1"] * (settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)),
        b"",
    ),
    "disallowed-user-agent": lambda b: (b.headers(user_agent="EvilBot/1.0"), BODY, b""),
}


@pytest.mark.parametrize("case", list(HANDED_OVER))
@pytest.mark.parametrize("path", ["/api/chat/", "/api/chat/stream/", "/api/quiz/generate/"])
@override_settings(DISALLOWED_USER_AGENTS=[re.compile(r"^EvilBot/")])
async def test_requests_the_fast_path_would_refuse_get_djangos_answer(
    fast: FastPath,
    django_app: Recorder,
    browser: Browser,
    service,
    caplog: pytest.LogCaptureFixture,
    case: str,
    path: str,
) -> None:
    mock_success(service)
    headers, body, query = HANDED_OVER[case](browser)
    if isinstance(body, list):
        headers = _without(headers, "content-length")
    else:
        headers = {**headers, "content-length": str(len(body))}
    headers["x-request-id"] = RID
    through_fast = await call(fast, "POST", path, headers, body, query_string=query)
    through_django = await call(django_app.app, "POST", path, headers, body, query_string=query)
    assert django_app.calls == 1, "the fast path answered a request it should hand over"
    assert through_fast.status in (400, 401, 403, 413, 415), through_fast
    assert_same(through_fast, through_django)
    assert not service.calls, "the service was contacted"
    assert_handed_over_as_a_refusal(fast, caplog)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/chat/"), ("PUT", "/api/chat/"), ("POST", "/api/nope/"), ("POST", "/api/chat")],
)
async def test_other_methods_and_paths_never_stop_at_the_fast_path(
    fast: FastPath, django_app: Recorder, browser: Browser, method: str, path: str
) -> None:
    through_fast, through_django = await both(
        fast, django_app, method, path, browser.headers(x_request_id=RID), BODY
    )
    assert django_app.calls == 1
    assert_same(through_fast, through_django)


# -- uploads: served without Django, checked as the body arrives ----------------------------
BOUNDARY = "b0undary"
UPLOAD_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(content: bytes, *, filename: str = "a.txt", file_type: str = "text/plain") -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="message"\r\n\r\nsum it up\r\n'
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
            f'name="file"; filename="{filename}"\r\n'
            f"Content-Type: {file_type}\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def _upload_headers(b: Browser, **extra: str) -> dict[str, str]:
    return b.headers(content_type=UPLOAD_TYPE, **extra)


# name -> browser -> (headers, body): every one is answered by the fast path itself.
UPLOADS_SERVED = {
    "ok": lambda b: (_upload_headers(b), multipart(b"hello\n")),
    "ok-in-pieces": lambda b: (_upload_headers(b), _pieces(multipart(b"hello " * 150), 7)),
    "path-in-filename": lambda b: (_upload_headers(b), multipart(b"x", filename="../../etc/a.txt")),
    "nul-in-text": lambda b: (_upload_headers(b), multipart(b"a\x00b")),
    "not-utf8": lambda b: (_upload_headers(b), multipart(b"\xff\xfe")),
    "not-a-pdf": lambda b: (
        _upload_headers(b),
        multipart(b"hello", filename="a.pdf", file_type="application/pdf"),
    ),
    "refused-in-pieces": lambda b: (
        _upload_headers(b),
        _pieces(multipart(b"ok" * 200 + b"\x00" * 300), 5),
    ),
    "no-closing-boundary": lambda b: (_upload_headers(b), multipart(b"hello")[:-12]),
    "part-too-large": lambda b: (_upload_headers(b), multipart(b"x" * 1001)),
}


def _pieces(body: bytes, count: int) -> list[bytes]:
    size = -(-len(body) // count)
    return [body[n : n + size] for n in range(0, len(body), size)]


@pytest.mark.parametrize("case", list(UPLOADS_SERVED))
@override_settings(MAX_UPLOAD_SIZE=1000)
async def test_uploads_are_served_without_django_with_djangos_answers(
    django_app: Recorder, browser: Browser, service, case: str
) -> None:
    fast = FastPath(django_app, sessions=SessionUsers(ttl=5.0, max_size=100))
    route = service.post("/chatbot/file/").mock(return_value=httpx.Response(200, json=REPLY))
    headers, body = UPLOADS_SERVED[case](browser)
    headers["x-request-id"] = RID
    through_fast, through_django = await both(
        fast, django_app, "POST", "/api/chat/file/", headers, body
    )
    assert django_app.calls == 0, "the fast path handed the upload to Django"
    assert_same(through_fast, through_django)
    if through_fast.status != 200:
        assert through_fast.status in (400, 413, 415), through_fast
        assert not route.calls, "a refused upload reached the service"
        return
    # Both paths forwarded the same rebuilt body, with its length.
    via_fast, via_django = (call.request for call in route.calls)
    assert via_fast.content == via_django.content
    assert via_fast.headers["content-length"] == str(len(via_fast.content))
    assert via_fast.headers["content-type"] == UPLOAD_TYPE
    assert b"../" not in via_fast.content


# name -> browser -> headers: each refused before a byte of the body is read, by Django.
UPLOADS_HANDED_OVER = {
    "anonymous": lambda b: {**_upload_headers(b), "cookie": f"csrftoken={b.csrf_secret}"},
    "unknown-session": lambda b: {
        **_upload_headers(b),
        "cookie": f"csrftoken={b.csrf_secret}; sessionid=nosuchsession123456",
    },
    "csrf-missing": lambda b: _without(_upload_headers(b), "x-csrftoken"),
    "csrf-wrong": lambda b: _upload_headers(b, x_csrftoken="A" * 64),
    "untrusted-origin": lambda b: _upload_headers(b, origin="http://evil.example"),
    "json": lambda b: b.headers(),
    "no-boundary": lambda b: b.headers(content_type="multipart/form-data"),
    "declared-too-large": lambda b: _upload_headers(b, content_length=str(2 * 1024 * 1024 * 1024)),
    "disallowed-host": lambda b: _upload_headers(b, host="evil.example"),
}


@pytest.mark.parametrize("case", list(UPLOADS_HANDED_OVER))
async def test_uploads_refused_on_their_headers_get_djangos_answer(
    fast: FastPath,
    django_app: Recorder,
    browser: Browser,
    service,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    route = service.post("/chatbot/file/").mock(return_value=httpx.Response(200, json=REPLY))
    headers = {"x-request-id": RID, **UPLOADS_HANDED_OVER[case](browser)}
    body = b"" if "content-length" in headers else multipart(b"hello")
    through_fast = await call(fast, "POST", "/api/chat/file/", headers, body)
    through_django = await call(django_app.app, "POST", "/api/chat/file/", headers, body)
    assert django_app.calls == 1, "the fast path answered an upload it should hand over"
    assert through_fast.status in (400, 401, 403, 413, 415), through_fast
    assert_same(through_fast, through_django)
    assert not route.calls, "the service was contacted"
    assert_handed_over_as_a_refusal(fast, caplog)


@override_settings(MAX_UPLOAD_SIZE=1000, MULTIPART_OVERHEAD=100)
async def test_a_refused_upload_that_goes_on_and_on_is_answered_with_connection_close(
    django_app: Recorder, browser: Browser, service
) -> None:
    # Without BodyLimit in front, the fast path itself stops reading a refused body.
    fast = FastPath(django_app, sessions=SessionUsers(ttl=5.0, max_size=100))
    body = [multipart(b"a\x00b")[:-12]] + [b"x" * 600] * 50
    result = await call(fast, "POST", "/api/chat/file/", _upload_headers(browser), body)
    assert result.status == 415, result.body
    assert ("connection", "close") in result.header_set()
    assert django_app.calls == 0
    assert not service.calls


async def test_an_upload_whose_client_leaves_mid_body_reaches_nobody(
    fast: FastPath, django_app: Recorder, browser: Browser, service
) -> None:
    body = multipart(b"hello " * 100)
    incoming = [
        {"type": "http.request", "body": body[:50], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    await fast(scope("POST", "/api/chat/file/", _upload_headers(browser)), receive, send)
    assert sent == [], "an answer was sent to a client that left"
    assert django_app.calls == 0
    assert not service.calls


# -- CSRF: the fast path's decision is Django's -------------------------------------------------
CSRF_CASES = {
    "masked-token": ({}, True),
    "unmasked-secret": ({"x_csrftoken": "SECRET"}, True),
    "trusted-origin": ({"origin": ALLOWED_ORIGIN}, True),
    "same-origin": ({"origin": f"http://{HOST}"}, True),
    "untrusted-origin": ({"origin": "http://evil.example"}, False),
    "null-origin": ({"origin": "null"}, False),
    "token-of-another-secret": ({"x_csrftoken": "OTHER"}, False),
    "malformed-token": ({"x_csrftoken": "not a token!"}, False),
    "short-token": ({"x_csrftoken": "abc"}, False),
    "https-without-referer": ({"scheme": "https"}, False),
    "https-same-host-referer": ({"scheme": "https", "referer": f"https://{HOST}/app"}, True),
    "https-foreign-referer": ({"scheme": "https", "referer": "https://evil.example/"}, False),
}


@pytest.mark.parametrize("case", list(CSRF_CASES))
async def test_csrf_decisions_match_djangos(
    fast: FastPath,
    django_app: Recorder,
    browser: Browser,
    service,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    mock_success(service)
    extra, accepted = CSRF_CASES[case]
    extra = dict(extra)
    scheme = extra.pop("scheme", "http")
    if extra.get("x_csrftoken") == "SECRET":
        extra["x_csrftoken"] = browser.csrf_secret
    elif extra.get("x_csrftoken") == "OTHER":
        extra["x_csrftoken"] = Browser("x").csrf_token
    headers = browser.headers(x_request_id=RID, **extra)
    through_fast = await call(fast, "POST", "/api/chat/", headers, BODY, scheme=scheme)
    through_django = await call(django_app.app, "POST", "/api/chat/", headers, BODY, scheme=scheme)
    served_by_fast_path = django_app.calls == 0
    assert served_by_fast_path is accepted
    assert (through_django.status != 403) is accepted, through_django.body
    assert_same(through_fast, through_django)
    assert_handed_over_as_a_refusal(fast, caplog)


# -- sessions -----------------------------------------------------------------------------------
async def test_a_logged_out_session_cannot_chat_on_the_fast_path(
    django_app: Recorder, browser: Browser, service
) -> None:
    from gateway.auth.session_users import session_users

    fast = FastPath(django_app)  # the process-wide cache, which logout evicts from
    session_users.clear()
    mock_success(service)
    assert (await call(fast, "POST", "/api/chat/", browser.headers(), BODY)).status == 200
    assert browser.session_key in session_users._entries
    logout = await call(fast, "POST", "/api/auth/logout/", browser.headers(), b"")
    assert logout.status == 204, logout.body
    assert browser.session_key not in session_users._entries
    again = await call(fast, "POST", "/api/chat/", browser.headers(), BODY)
    assert again.status == 401, again.body
    assert django_app.calls == 2  # the logout, and the refused chat


async def test_a_rotated_session_key_is_forgotten_at_once(browser: Browser, alice) -> None:
    from importlib import import_module

    from gateway.auth.session_users import session_users

    session_users.clear()
    assert await session_users.user_id(browser.session_key) == alice.pk
    store = import_module(settings.SESSION_ENGINE).SessionStore(browser.session_key)
    await store.acycle_key()  # deletes the old row: login does this
    assert browser.session_key not in session_users._entries
    assert await session_users.user_id(browser.session_key) is None


# -- disconnects --------------------------------------------------------------------------------
async def wait_until(predicate, within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)  # poll interval, not synchronisation


async def test_a_disconnect_mid_stream_closes_the_upstream_response(
    fast: FastPath, browser: Browser, service
) -> None:
    closed = asyncio.Event()
    never = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b'event: token\ndata: {"text":"a"}\n\n'
            await never.wait()
            yield b"never sent"
        finally:
            closed.set()

    service.post("/chatbot/stream/").mock(
        return_value=httpx.Response(
            200, content=body(), headers={"content-type": "text/event-stream"}
        )
    )
    gone = asyncio.Event()
    sent: list[dict] = []
    task = asyncio.ensure_future(
        call(
            fast,
            "POST",
            "/api/chat/stream/",
            browser.headers(),
            BODY,
            disconnect=gone,
            messages=sent,
        )
    )
    await wait_until(lambda: any(m.get("body") for m in sent))
    assert not closed.is_set()
    gone.set()
    await asyncio.wait_for(closed.wait(), timeout=1.0)
    result = await asyncio.wait_for(task, timeout=1.0)
    assert result.status == 200
    assert b"never sent" not in result.body


async def test_a_disconnect_before_the_answer_cancels_the_upstream_request(
    fast: FastPath, browser: Browser, service
) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    service.post("/chatbot/").mock(side_effect=hang)
    gone = asyncio.Event()
    task = asyncio.ensure_future(
        call(fast, "POST", "/api/chat/", browser.headers(), BODY, disconnect=gone)
    )
    await asyncio.wait_for(started.wait(), timeout=2.0)
    gone.set()
    await asyncio.wait_for(cancelled.wait(), timeout=1.0)
    result = await asyncio.wait_for(task, timeout=1.0)
    assert result.status is None, "an answer was sent to a client that left"


# -- a fault in admission: Django answers, the fast path says so -------------------------------
class FastPathBug(RuntimeError):
    """Stands for a bug in the fast path's own admission code."""


def _fail(*args: object, **kwargs: object) -> None:
    raise FastPathBug("admission broke")


async def _fail_async(*args: object, **kwargs: object) -> None:
    raise FastPathBug("admission broke")


# name -> (path, step, break it): each breaks one step of the one admission.
BREAKS = {
    "request": ("/api/chat/", lambda fast, patch: patch.setattr(fastpath, "ASGIRequest", _fail)),
    "middleware": ("/api/chat/", lambda fast, patch: patch.setattr(fast.plan, "admits", _fail)),
    "session": (
        "/api/chat/stream/",
        lambda fast, patch: patch.setattr(fast.sessions, "user_id", _fail_async),
    ),
    "body": (
        "/api/quiz/generate/",
        lambda fast, patch: patch.setattr(fastpath, "read_json_object", _fail),
    ),
    "upload-session": (
        "/api/chat/file/",
        lambda fast, patch: patch.setattr(fast.sessions, "user_id", _fail_async),
    ),
    "upload-body": (
        "/api/chat/file/",
        lambda fast, patch: patch.setattr(fastpath, "check_upload_headers", _fail),
    ),
}


@pytest.mark.parametrize("case", list(BREAKS))
async def test_an_unexpected_exception_in_admission_is_answered_by_django_counted_and_logged_once(
    fast: FastPath,
    django_app: Recorder,
    browser: Browser,
    service,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    mock_success(service)
    service.post("/chatbot/file/").mock(return_value=httpx.Response(200, json=REPLY))
    path, break_it = BREAKS[case]
    upload = path == "/api/chat/file/"
    headers = _upload_headers(browser) if upload else browser.headers()
    headers["x-request-id"] = RID
    body = multipart(b"hello") if upload else BODY
    through_django = await call(django_app.app, "POST", path, headers, body)
    assert through_django.status == 200, through_django.body
    break_it(fast, monkeypatch)
    kind = f"{case.removeprefix('upload-')}:FastPathBug"

    first = await call(fast, "POST", path, headers, body)
    assert django_app.calls == 1, "the request was not handed to Django"
    assert_same(first, through_django)  # never a 500 of the fast path's own
    assert fast.fallbacks == Counter({kind: 1})
    [record] = fast_path_records(caplog)
    assert record.levelno == logging.ERROR
    assert RID in record.getMessage()
    assert kind in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], FastPathBug)
    assert "FastPathBug: admission broke" in caplog.text  # the traceback

    second = await call(fast, "POST", path, headers, body)
    assert django_app.calls == 2
    assert_same(second, through_django)
    assert fast.fallbacks == Counter({kind: 2}), "a fallback went uncounted"
    assert len(fast_path_records(caplog)) == 1, "the same kind of fallback was logged twice"


async def test_the_request_id_logged_for_a_fallback_is_the_one_djangos_answer_carries(
    fast: FastPath,
    django_app: Recorder,
    browser: Browser,
    service,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mock_success(service)
    monkeypatch.setattr(fast.sessions, "user_id", _fail_async)
    result = await call(fast, "POST", "/api/chat/", browser.headers(), BODY)  # no X-Request-ID
    assert result.status == 200, result.body
    assert django_app.calls == 1
    [request_id] = [value for name, value in result.headers if name.lower() == "x-request-id"]
    [record] = fast_path_records(caplog)
    assert f"(request {request_id})" in record.getMessage()
    assert service.calls.last.request.headers["x-request-id"] == request_id


# -- configuration ------------------------------------------------------------------------------
async def test_an_unknown_middleware_turns_the_fast_path_off(
    django_app: Recorder, browser: Browser, service, caplog
) -> None:
    mock_success(service)
    middleware = [*settings.MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]
    with override_settings(MIDDLEWARE=middleware):
        fast = FastPath(django_app, sessions=SessionUsers(ttl=5.0, max_size=10))
    assert fast.plan is None
    assert "GZipMiddleware" in caplog.text
    result = await call(fast, "POST", "/api/chat/", browser.headers(), BODY)
    assert result.status == 200
    assert django_app.calls == 1
