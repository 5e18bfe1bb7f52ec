"""Speak to a gateway or service the way a browser or the gateway would.

Helpers for the session + CSRF login flow, Server-Sent Events parsing that
keeps the raw bytes (so tests can check event boundaries), and the
problem+json shape every error must have.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from . import observed
from .system import User

TIMEOUT = httpx.Timeout(10.0)


def http_client(base_url: str, **kwargs: Any) -> httpx.Client:
    """A plain client for ``base_url`` that ignores proxy variables from the environment."""
    return httpx.Client(base_url=base_url, timeout=TIMEOUT, trust_env=False, **kwargs)


def async_http_client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, trust_env=False, **kwargs)


def csrf_token(cookies: httpx.Cookies, answer: httpx.Response | None = None) -> str:
    """The CSRF token as a browser script finds it: the ``csrftoken`` cookie, else the
    ``csrfToken`` member of ``answer`` (the spec offers both; GW-SESS-1 checks each)."""
    token = cookies.get("csrftoken")
    if not token and answer is not None:
        body = problem_body(answer)
        token = body.get("csrfToken") if isinstance(body.get("csrfToken"), str) else None
    assert token, "the gateway gave no CSRF token (no csrftoken cookie, no csrfToken member)"
    return token


def login(base_url: str, user: User, **kwargs: Any) -> httpx.Client:
    """A client logged in as ``user``, sending the CSRF token on every request."""
    client = http_client(base_url, **kwargs)
    issued = client.get("/api/auth/csrf/").raise_for_status()
    response = client.post(
        "/api/auth/login/",
        headers={"X-CSRFToken": csrf_token(client.cookies, issued)},
        json={"username": user.username, "password": user.password},
    )
    assert response.status_code == 200, f"login failed: {response.status_code} {response.text}"
    client.headers["X-CSRFToken"] = csrf_token(client.cookies, response)  # login rotates the token
    return client


@contextlib.contextmanager
def logged_in(base_url: str, user: User) -> Iterator[httpx.Client]:
    """:func:`login` as a context manager (httpx refuses ``with`` on a client already used)."""
    client = login(base_url, user)
    try:
        yield client
    finally:
        client.close()


@dataclass(frozen=True)
class Session:
    """A logged-in session at a gateway: its cookies and CSRF token.

    Logging in costs a password hash (~0.3 s with Django's default hasher), so each
    user logs in once per gateway and every test gets a fresh client carrying the
    same session.
    """

    base_url: str
    cookies: httpx.Cookies
    csrf: str

    @classmethod
    def of(cls, base_url: str, user: User) -> Session:
        with logged_in(base_url, user) as client:
            return cls(base_url, httpx.Cookies(client.cookies), client.headers["X-CSRFToken"])

    def headers(self) -> tuple[tuple[str, str], ...]:
        """What a browser of this session sends on an unsafe request: cookies and CSRF token."""
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.cookies.jar)
        return (("Cookie", cookie), ("X-CSRFToken", self.csrf))

    @contextlib.contextmanager
    def client(self) -> Iterator[httpx.Client]:
        headers = {"X-CSRFToken": self.csrf}
        cookies = httpx.Cookies(self.cookies)
        with http_client(self.base_url, cookies=cookies, headers=headers) as client:
            yield client


async def alogin(base_url: str, user: User, **kwargs: Any) -> httpx.AsyncClient:
    """The async twin of :func:`login`."""
    client = async_http_client(base_url, **kwargs)
    issued = (await client.get("/api/auth/csrf/")).raise_for_status()
    response = await client.post(
        "/api/auth/login/",
        headers={"X-CSRFToken": csrf_token(client.cookies, issued)},
        json={"username": user.username, "password": user.password},
    )
    assert response.status_code == 200, f"login failed: {response.status_code} {response.text}"
    client.headers["X-CSRFToken"] = csrf_token(client.cookies, response)
    return client


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event as it was on the wire."""

    event: str
    data: str
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.data)


class EventReader:
    """Incremental SSE parser: feed bytes in any chunking, get complete events out.

    ``pending`` holds the bytes of an event that has not been terminated by a
    blank line yet, so a test can tell whether a stream ended on an event boundary.
    """

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, chunk: bytes) -> list[Event]:
        self.pending = (self.pending + chunk).replace(b"\r\n", b"\n")
        events = []
        while b"\n\n" in self.pending:
            raw, self.pending = self.pending.split(b"\n\n", 1)
            event = parse_event(raw)
            if event is not None:
                events.append(event)
        return events


def parse_event(raw: bytes) -> Event | None:
    """Parse one event block (without its blank line); comment-only blocks give None."""
    name, data, seen = "message", [], False
    for line in raw.decode("utf-8").split("\n"):
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        seen = True
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return Event(name, "\n".join(data), raw) if seen else None


def read_events(response: httpx.Response) -> Iterator[Event]:
    """Events of a streamed response, as they arrive."""
    reader = EventReader()
    for chunk in response.iter_raw():
        yield from reader.feed(chunk)
    assert not reader.pending.strip(), f"stream ended inside an event: {reader.pending!r}"


def parse_stream(body: bytes) -> tuple[list[Event], bytes]:
    """All events of a complete body, and whatever trailing bytes were not an event."""
    reader = EventReader()
    events = reader.feed(body)
    return events, reader.pending


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert an error answer's ``status``; return its problem body (``{}`` if it has none).

    Its problem+json shape is PROB-1's business, not the calling test's: the answer is
    recorded (harness/observed.py) and judged once, by PROB-1's own test at the end of
    the run, so one missing field is one failure there, not one in every test.
    """
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text[:500]}"
    )
    observed.record("PROB-1", response, problem_violations(response, status))
    return problem_body(response)


def assert_problem_document(response: httpx.Response, status: int) -> dict[str, Any]:
    """PROB-1 itself: an RFC 9457 problem response with ``status``; its body."""
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text[:500]}"
    )
    violations = problem_violations(response, status)
    assert not violations, f"{status} answer is not a problem document: {'; '.join(violations)}"
    return problem_body(response)


def problem_violations(response: httpx.Response, status: int) -> list[str]:
    """How ``response`` falls short of an RFC 9457 problem with ``status`` (PROB-1)."""
    content_type = response.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/problem+json":
        return [f"content type {content_type!r}, not application/problem+json"]
    try:
        body = response.json()
    except ValueError:
        return [f"the body is not JSON: {response.text[:200]!r}"]
    if not isinstance(body, dict):
        return [f"the body is not a JSON object: {body!r:.200}"]
    found = [f"the body lacks {key!r}" for key in PROBLEM_MEMBERS if key not in body]
    if "status" in body and body["status"] != status:
        found.append(f"its status member is {body['status']!r}, not {status}")
    found += [
        f"its {key!r} is not a string"
        for key in ("type", "title", "detail")
        if key in body and not isinstance(body[key], str)
    ]
    return found


def problem_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a problem answer, or ``{}`` when its body is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


#: The members every problem document has (PROB-1).
PROBLEM_MEMBERS = ("type", "title", "status", "detail")


#: Text that betrays a stack trace (PROB-2).
TRACE_MARKERS = ("Traceback (most recent call last)", 'File "')


def assert_no_leak(response: httpx.Response, *secrets: str) -> None:
    """PROB-2 itself: no secret and no stack trace in the response's headers or body."""
    violations = leak_violations(response, *secrets)
    assert not violations, violations[0]


def observe_leaks(response: httpx.Response, *secrets: str) -> None:
    """Record ``response`` for PROB-2's judgement at the end of the run (see assert_problem)."""
    observed.record("PROB-2", response, leak_violations(response, *secrets))


def leak_violations(response: httpx.Response, *secrets: str) -> list[str]:
    """What of a secret or a stack trace ``response`` shows (PROB-2); secrets are not quoted."""
    headers = "\n".join(
        f"{k.decode('latin-1')}: {v.decode('latin-1')}" for k, v in response.headers.raw
    )
    body = response.content.decode("utf-8", errors="replace")
    found = []
    for n, value in enumerate(secrets, 1):
        if value in headers:
            found.append(f"secret #{n} is in the response headers")
        if value in body:
            found.append(f"secret #{n} is in the response body")
    for marker in TRACE_MARKERS:
        if marker in body:
            found.append(f"a stack trace is in the response body: {body[:300]}")
        if marker in headers:
            found.append(f"a stack trace is in the response headers:\n{headers}")
    return found
