"""SEC-1, SEC-3..SEC-6 at the gateway: cookies, security headers, forwarded headers, uploads.

Black box: the gateway is driven over HTTP, the fake service's control API says
what reached it. A gateway that trusts a proxy is started once for the module
(``proxied_gateway``): 127.0.0.1 (the tests' own address) and 10.0.0.0/8 are its
trusted proxies, so the tests can play a proxy; the default ``gateway`` trusts
no one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie

import httpx
import pytest

from contract_tests.files import MISMATCHED_FILES
from contract_tests.gateway.conftest import (
    anonymous,
    assert_not_contacted,
    one_request,
    only_value,
    problem,
    route_params,
)
from harness.client import Session, assert_problem, http_client
from harness.fakes import FakeControl
from harness.spec import ProxiedRoute, proxied_routes, route
from harness.system import Fake, Harness, Running, User

SPOOFED = "203.0.113.7"
MIB = 1024 * 1024

CHAT = route("chat")
STREAM = route("chat_stream")
FILE = route("chat_file")


@pytest.fixture(scope="module")
def proxied_gateway(
    harness: Harness, fake_service_server: Fake, users: list[User]
) -> Iterator[Running]:
    """A gateway that believes the forwarded headers of 127.0.0.1 and of 10.0.0.0/8."""
    running = harness.start_gateway(
        fake_service_server.url, users, trusted_proxies="127.0.0.1,10.0.0.0/8"
    )
    try:
        yield running
    finally:
        running.process.stop()


@pytest.fixture(scope="module")
def proxied_session(proxied_gateway: Running, alice: User) -> Session:
    return Session.of(proxied_gateway.url, alice)


@pytest.fixture
def proxied_client(proxied_session: Session) -> Iterator[httpx.Client]:
    with proxied_session.client() as client:
        yield client


# -- cookies ------------------------------------------------------------------------------------
def set_cookies(response: httpx.Response) -> dict[str, dict[str, str | bool]]:
    """The response's Set-Cookie headers: cookie name -> its attributes (lower-case names)."""
    cookies: dict[str, dict[str, str | bool]] = {}
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        attributes: dict[str, str | bool] = {}
        for attribute in rest.split(";")[1:]:
            key, sep, value = attribute.strip().partition("=")
            attributes[key.lower()] = value if sep else True
        cookies[name.strip()] = attributes
        parsed = SimpleCookie()
        parsed.load(header)  # the header is a well-formed cookie
        assert name.strip() in parsed, header
    return cookies


def csrf_then_login(
    base_url: str, user: User, headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    """GET the CSRF cookie, then log in, both with ``headers``; cookies sent by hand.

    The cookies may be Secure, which a client keeps off plain-HTTP requests: so
    they are sent explicitly, as a browser behind an HTTPS proxy would send them.
    """
    with http_client(base_url) as client:
        csrf = client.get("/api/auth/csrf/", headers=headers)
    assert csrf.status_code == 200, csrf.text
    value = csrf.cookies.get("csrftoken")
    assert value, f"no csrftoken cookie: {csrf.headers}"
    with http_client(base_url) as client:
        login = client.post(
            "/api/auth/login/",
            json={"username": user.username, "password": user.password},
            headers={**headers, "Cookie": f"csrftoken={value}", "X-CSRFToken": value},
        )
    assert login.status_code == 200, login.text
    return csrf, login


@pytest.mark.req("SEC-1")
def test_sec_1_session_cookie_is_httponly_and_lax_and_csrf_cookie_is_lax(
    gateway: Running, alice: User
) -> None:
    csrf, login = csrf_then_login(gateway.url, alice, {})
    token = set_cookies(csrf)["csrftoken"]
    assert str(token.get("samesite", "")).lower() == "lax", token
    session = set_cookies(login)["sessionid"]
    assert session.get("httponly") is True, session
    assert str(session.get("samesite", "")).lower() == "lax", session
    rotated = set_cookies(login).get("csrftoken")
    if rotated is not None:
        assert str(rotated.get("samesite", "")).lower() == "lax", rotated


@pytest.mark.req("SEC-1")
def test_sec_1_cookies_are_secure_when_a_trusted_proxy_says_https(
    proxied_gateway: Running, alice: User
) -> None:
    # Django checks the Origin of an unsafe HTTPS request against its own host.
    host = proxied_gateway.url.removeprefix("http://")
    headers = {"X-Forwarded-Proto": "https", "Origin": f"https://{host}"}
    csrf, login = csrf_then_login(proxied_gateway.url, alice, headers)
    token = set_cookies(csrf)["csrftoken"]
    assert token.get("secure") is True, f"CSRF cookie over HTTPS is not Secure: {token}"
    assert str(token.get("samesite", "")).lower() == "lax", token
    cookies = set_cookies(login)
    session = cookies["sessionid"]
    assert session.get("secure") is True, f"session cookie over HTTPS is not Secure: {session}"
    assert session.get("httponly") is True, session
    assert str(session.get("samesite", "")).lower() == "lax", session
    for name, attributes in cookies.items():
        assert attributes.get("secure") is True, f"{name} set over HTTPS without Secure"


@pytest.mark.req("SEC-1")
def test_sec_1_cookies_over_plain_http_from_a_trusted_proxy_are_not_forced_secure(
    proxied_gateway: Running, alice: User
) -> None:
    # The same gateway over HTTP: a Secure cookie would never come back, and log-in would break.
    csrf, login = csrf_then_login(proxied_gateway.url, alice, {"X-Forwarded-Proto": "http"})
    assert "secure" not in set_cookies(csrf)["csrftoken"]
    assert "secure" not in set_cookies(login)["sessionid"]


# -- forwarded headers --------------------------------------------------------------------------
@pytest.mark.req("SEC-4")
def test_sec_4_an_untrusted_client_cannot_claim_https(gateway: Running, alice: User) -> None:
    with http_client(gateway.url) as client:
        csrf = client.get("/api/auth/csrf/", headers={"X-Forwarded-Proto": "https"})
    assert csrf.status_code == 200, csrf.text
    token = set_cookies(csrf)["csrftoken"]
    assert "secure" not in token, f"the gateway believed a client's X-Forwarded-Proto: {token}"


@pytest.mark.req("SEC-4")
@pytest.mark.parametrize("route", route_params())
def test_sec_4_an_untrusted_x_forwarded_for_is_replaced_by_the_peer_address(
    alice_client: httpx.Client, fake_service: FakeControl, route: ProxiedRoute
) -> None:
    token = fake_service.behave(times=1)
    spoof = [("X-Forwarded-For", SPOOFED), ("X-Forwarded-For", "10.9.9.9")]
    response = route.call(alice_client, token, headers=spoof)
    assert response.status_code == 200, response.text
    record = one_request(fake_service, token)
    assert only_value(record, "x-forwarded-for") == "127.0.0.1"


@pytest.mark.req("SEC-4")
@pytest.mark.parametrize("route", route_params())
def test_sec_4_a_trusted_proxy_s_x_forwarded_for_names_the_client(
    proxied_client: httpx.Client, fake_service: FakeControl, route: ProxiedRoute
) -> None:
    token = fake_service.behave(times=1)
    response = route.call(proxied_client, token, headers=[("X-Forwarded-For", SPOOFED)])
    assert response.status_code == 200, response.text
    record = one_request(fake_service, token)
    assert only_value(record, "x-forwarded-for") == SPOOFED


@pytest.mark.req("SEC-4")
@pytest.mark.parametrize(
    ("chain", "client"),
    [
        pytest.param("198.51.100.1, 203.0.113.7, 10.1.2.3", "203.0.113.7", id="one-hop-trusted"),
        pytest.param("198.51.100.1, 203.0.113.7, 10.0.0.9, 10.1.2.3", "203.0.113.7", id="two"),
        pytest.param("198.51.100.1, 203.0.113.7", "203.0.113.7", id="last-is-client"),
    ],
)
def test_sec_4_behind_trusted_proxies_the_client_is_the_right_most_untrusted_address(
    proxied_client: httpx.Client, fake_service: FakeControl, chain: str, client: str
) -> None:
    token = fake_service.behave(times=1)
    response = CHAT.call(proxied_client, token, headers=[("X-Forwarded-For", chain)])
    assert response.status_code == 200, response.text
    assert only_value(one_request(fake_service, token), "x-forwarded-for") == client


@pytest.mark.req("SEC-4")
def test_sec_4_a_gateway_trusting_other_proxies_ignores_a_loopback_client(
    start_gateway: Callable[..., Running], fake_service: FakeControl, alice: User
) -> None:
    other = start_gateway(trusted_proxies="10.0.0.0/8,192.0.2.1")
    with Session.of(other.url, alice).client() as client:
        token = fake_service.behave(times=1)
        response = CHAT.call(client, token, headers=[("X-Forwarded-For", SPOOFED)])
        assert response.status_code == 200, response.text
        csrf = client.get("/api/auth/csrf/", headers={"X-Forwarded-Proto": "https"})
    assert only_value(one_request(fake_service, token), "x-forwarded-for") == "127.0.0.1"
    assert "secure" not in set_cookies(csrf)["csrftoken"]


# -- security headers on every response -----------------------------------------------------------
def _json_too_large(client: httpx.Client, fake: FakeControl) -> httpx.Response:
    return client.post(CHAT.path, json={"message": "x" * (MIB + 10)})


def _file_too_large(client: httpx.Client, fake: FakeControl) -> httpx.Response:
    files = {"file": ("big.txt", b"x" * (10 * MIB + 1), "text/plain")}
    return client.post(FILE.path, data={"message": "big"}, files=files, timeout=30.0)


def _upstream_500(route: ProxiedRoute) -> Callable[[httpx.Client, FakeControl], httpx.Response]:
    def call(client: httpx.Client, fake: FakeControl) -> httpx.Response:
        return route.call(client, fake.behave(status=500, body="boom", times=1))

    return call


def _ok(route: ProxiedRoute) -> Callable[[httpx.Client, FakeControl], httpx.Response]:
    def call(client: httpx.Client, fake: FakeControl) -> httpx.Response:
        return route.call(client, fake.behave(times=1))

    return call


def _no_csrf(client: httpx.Client, fake: FakeControl) -> httpx.Response:
    with http_client(str(client.base_url), cookies=client.cookies) as bare:
        return bare.post(CHAT.path, json={"message": "no token"})


def _anonymous(client: httpx.Client, fake: FakeControl) -> httpx.Response:
    with anonymous(str(client.base_url)) as anon:
        return anon.post(CHAT.path, json={"message": "who am I"})


def _bad_login(client: httpx.Client, fake: FakeControl) -> httpx.Response:
    with anonymous(str(client.base_url)) as anon:
        return anon.post("/api/auth/login/", json={"username": "alice", "password": "wrong"})


def _unknown_host(client: httpx.Client, fake: FakeControl) -> httpx.Response:
    return client.get("/api/health/", headers={"Host": "evil.example"})


def _mid_stream_error(client: httpx.Client, fake: FakeControl) -> httpx.Response:
    return STREAM.call(client, fake.behave(events=3, error_after=1, times=1))


#: (id, expected status or None for any, request) of responses of every kind.
SECURITY_CASES: list[
    tuple[str, int | None, Callable[[httpx.Client, FakeControl], httpx.Response]]
] = [
    *((f"{each}-200", 200, _ok(each)) for each in proxied_routes()),
    ("stream-error-event", 200, _mid_stream_error),
    ("health", 200, lambda c, f: c.get("/api/health/")),
    ("csrf", 200, lambda c, f: c.get("/api/auth/csrf/")),
    ("me", 200, lambda c, f: c.get("/api/auth/me/")),
    ("bad-login-401", 401, _bad_login),
    ("anonymous-401", 401, _anonymous),
    ("csrf-403", 403, _no_csrf),
    ("invalid-json-400", 400, lambda c, f: c.post(CHAT.path, content=b"{", headers=_json())),
    # No requirement makes the gateway check Host (Django refuses one not in ALLOWED_HOSTS
    # with 400, another gateway may serve it): whatever it answers carries the headers.
    ("unknown-host", None, _unknown_host),
    ("404", 404, lambda c, f: c.get("/api/no-such-route/")),
    ("405", 405, lambda c, f: c.get(CHAT.path)),
    ("json-413", 413, _json_too_large),
    ("file-413", 413, _file_too_large),
    ("415", 415, lambda c, f: c.post(CHAT.path, content=b"hi", headers=_text())),
    *((f"{each}-502", 502, _upstream_500(each)) for each in proxied_routes()),
]


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def _text() -> dict[str, str]:
    return {"Content-Type": "text/plain"}


@pytest.mark.req("SEC-3")
@pytest.mark.parametrize(
    ("status", "send"),
    [pytest.param(status, send, id=name) for name, status, send in SECURITY_CASES],
)
def test_sec_3_every_response_carries_nosniff_and_frame_deny(
    alice_client: httpx.Client,
    fake_service: FakeControl,
    secret: str,
    status: int | None,
    send: Callable[[httpx.Client, FakeControl], httpx.Response],
) -> None:
    response = send(alice_client, fake_service)
    status = status or response.status_code  # None: any answer will do
    if status >= 400:
        problem(response, status, secret)
    else:
        assert response.status_code == status, response.text[:500]
    assert response.headers.get_list("x-content-type-options") == ["nosniff"], response.headers
    assert [v.upper() for v in response.headers.get_list("x-frame-options")] == ["DENY"], (
        response.headers
    )


@pytest.mark.req("SEC-3")
def test_sec_3_a_logout_and_a_login_carry_nosniff_and_frame_deny(
    gateway: Running, alice: User
) -> None:
    with http_client(gateway.url) as client:
        client.get("/api/auth/csrf/")
        token = client.cookies["csrftoken"]
        login = client.post(
            "/api/auth/login/",
            json={"username": alice.username, "password": alice.password},
            headers={"X-CSRFToken": token},
        )
        assert login.status_code == 200, login.text
        logout = client.post(
            "/api/auth/logout/", headers={"X-CSRFToken": client.cookies["csrftoken"]}
        )
        assert logout.status_code in (200, 204), logout.text
    for response in (login, logout):
        assert response.headers.get("x-content-type-options") == "nosniff", response.headers
        assert response.headers.get("x-frame-options", "").upper() == "DENY", response.headers


# -- upload filenames ----------------------------------------------------------------------------
BOUNDARY = "sec5-boundary-7f3a"


def raw_upload(filename: bytes, content: bytes, message: str) -> tuple[bytes, dict[str, str]]:
    """A multipart body with ``filename`` written raw into its Content-Disposition."""
    body = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="message"\r\n\r\n'
        f"{message}\r\n"
        f"--{BOUNDARY}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\nContent-Type: text/plain\r\n\r\n'
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.mark.req("SEC-5")
@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        pytest.param(b"../../etc/passwd", "passwd", id="dot-dot-slash"),
        pytest.param(b"/etc/passwd", "passwd", id="absolute"),
        pytest.param(b"..\\..\\x.txt", "x.txt", id="backslashes"),
        pytest.param(b"C:\\Windows\\win.ini", "win.ini", id="drive"),
        pytest.param(b"a\nb.txt", "ab.txt", id="newline"),
        pytest.param(b"a\x01\x7f\tb.txt", "ab.txt", id="controls"),
        pytest.param(b"../a\x1b[31mred.txt", "a[31mred.txt", id="escape"),
        pytest.param(b"", "upload", id="empty"),
        pytest.param(b"...", "upload", id="dots"),
        pytest.param(b"../..", "upload", id="only-dirs"),
        pytest.param(b"\n\x01", "upload", id="only-controls"),
        pytest.param("dossier/résumé.txt".encode(), "résumé.txt", id="utf-8"),
    ],
)
def test_sec_5_the_upload_name_reaches_the_service_neutralised(
    alice_client: httpx.Client, fake_service: FakeControl, raw: bytes, safe: str
) -> None:
    token = fake_service.behave(times=1)
    content = b"plain notes\n"
    message = f"summarise {token}"
    body, headers = raw_upload(raw, content, message)
    response = alice_client.post(FILE.path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    digest = hashlib.sha256(content).hexdigest()
    # The fake service answers with the name it parsed from the multipart body.
    expected = f"file {safe} {len(content)} bytes sha256 {digest}: {message}"
    assert response.json()["reply"] == expected
    record = one_request(fake_service, token)
    sent = record["body"]
    assert re.search(rf'filename="?{re.escape(safe)}"?(;|\r\n)', sent), sent[:500]
    if raw:
        assert raw.decode("utf-8") not in sent, f"the raw name reached the service: {sent[:500]}"


@pytest.mark.req("SEC-5")
def test_sec_5_a_quote_in_the_name_cannot_add_parameters(
    alice_client: httpx.Client, fake_service: FakeControl
) -> None:
    token = fake_service.behave(times=1)
    # As a form library escapes it: the name is `x.txt"; name="evil`, one parameter.
    body, headers = raw_upload(b'x.txt\\"; name=\\"evil', b"notes\n", f"hi {token}")
    response = alice_client.post(FILE.path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    reply = response.json()["reply"]
    # Still one file part called "file", carrying its bytes.
    assert " 6 bytes sha256 " in reply, reply


# -- file types ----------------------------------------------------------------------------------


@pytest.mark.req("SEC-6")
@pytest.mark.parametrize(("name", "content", "content_type"), MISMATCHED_FILES)
def test_sec_6_bytes_that_do_not_match_the_declared_type_get_415_at_the_gateway(
    alice_client: httpx.Client,
    fake_service: FakeControl,
    secret: str,
    name: str,
    content: bytes,
    content_type: str,
) -> None:
    fake_service.behave(reply={"reply": "must not be seen", "usage": {}})
    response = alice_client.post(
        FILE.path,
        data={"message": "what is this?"},
        files={"file": (name, content, content_type)},
    )
    problem(response, 415, secret)
    assert_not_contacted(fake_service)


@pytest.mark.req("SEC-6")
def test_sec_6_a_large_text_spoiled_at_its_end_is_refused(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str
) -> None:
    content = b"fine text\n" * (512 * 1024) + b"\x00"  # 5 MiB, the NUL at the very end
    response = alice_client.post(
        FILE.path,
        data={"message": "what is this?"},
        files={"file": ("notes.txt", content, "text/plain")},
        timeout=30.0,
    )
    problem(response, 415, secret)
    assert_not_contacted(fake_service)


@pytest.mark.req("SEC-6")
@pytest.mark.parametrize(
    ("name", "content", "content_type"),
    [
        pytest.param("notes.txt", "naïve ✓ notes\n".encode(), "text/plain", id="text"),
        pytest.param("notes.md", b"\xef\xbb\xbf# BOM first\n", "text/markdown", id="markdown-bom"),
        pytest.param("doc.pdf", b"%PDF-1.7\n" + bytes(range(256)), "application/pdf", id="pdf"),
        pytest.param("doc.pdf", b"%PDF-1.4\n\x00", "application/octet-stream", id="pdf-by-name"),
    ],
)
def test_sec_6_bytes_that_match_the_declared_type_reach_the_service_intact(
    alice_client: httpx.Client,
    fake_service: FakeControl,
    name: str,
    content: bytes,
    content_type: str,
) -> None:
    token = fake_service.behave(times=1)
    message = f"what is this? {token}"
    response = alice_client.post(
        FILE.path, data={"message": message}, files={"file": (name, content, content_type)}
    )
    assert response.status_code == 200, response.text
    digest = hashlib.sha256(content).hexdigest()
    assert (
        response.json()["reply"] == f"file {name} {len(content)} bytes sha256 {digest}: {message}"
    )


@pytest.mark.req("SEC-6")
def test_sec_6_a_refused_upload_leaves_the_gateway_serving(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str
) -> None:
    files = {"file": ("doc.pdf", b"MZ\x90\x00", "application/pdf")}
    assert_problem(alice_client.post(FILE.path, data={"message": "x"}, files=files), 415)
    assert_not_contacted(fake_service)
    token = fake_service.behave(times=1)
    after = FILE.call(alice_client, token)
    assert after.status_code == 200, after.text
