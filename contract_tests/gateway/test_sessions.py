"""GW-SESS: users, sessions, CSRF and CORS at the gateway."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable

import httpx
import pytest

from contract_tests.gateway.conftest import (
    CUSTOM_ORIGIN,
    anonymous,
    assert_not_contacted,
    problem,
    route_params,
    user_id,
)
from harness.client import Session, csrf_token, http_client, logged_in
from harness.fakes import FakeControl
from harness.processes import LOOPBACK
from harness.spec import ProxiedRoute, proxied_routes, route
from harness.system import Running, User

ALLOWED_ORIGIN = "http://localhost:3000"
EVIL_ORIGIN = "http://evil.example"
CHAT = route("chat")


def random_csrf_token() -> str:
    """A well-formed (64 alphanumerics) CSRF token that no cookie matches."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(64))


def post_login(client: httpx.Client, user: User, csrf: str) -> httpx.Response:
    return client.post(
        "/api/auth/login/",
        headers={"X-CSRFToken": csrf},
        json={"username": user.username, "password": user.password},
    )


def session_client(base_url: str, session_id: str) -> httpx.Client:
    """A fresh client that presents only ``session_id`` as its session cookie."""
    return http_client(base_url, headers={"Cookie": f"sessionid={session_id}"})


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


def preflight(client: httpx.Client, origin: str, path: str = CHAT.path) -> httpx.Response:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-csrftoken",
        },
    )


# -- GW-SESS-1 ----------------------------------------------------------------------------------
@pytest.mark.req("GW-SESS-1")
def test_gw_sess_1_csrf_login_me_and_logout_work_in_order(
    gateway: Running, alice: User, secret: str
) -> None:
    with http_client(gateway.url) as client:
        csrf = client.get("/api/auth/csrf/")
        assert csrf.status_code == 200, csrf.text
        token = csrf.json()["csrfToken"]
        assert isinstance(token, str)
        assert token
        assert client.cookies.get("csrftoken"), "GET /api/auth/csrf/ set no csrftoken cookie"
        problem(client.get("/api/auth/me/"), 401, secret)

        logged_in = post_login(client, alice, token)
        assert logged_in.status_code == 200, logged_in.text
        body = logged_in.json()
        assert body["username"] == alice.username
        assert isinstance(body["id"], int)
        assert body["csrfToken"]
        assert client.cookies.get("sessionid"), "login set no sessionid cookie"

        me = client.get("/api/auth/me/")
        assert me.status_code == 200, me.text
        assert me.json()["username"] == alice.username
        assert me.json()["id"] == body["id"]

        session_id = client.cookies["sessionid"]
        with session_client(gateway.url, session_id) as replay:
            assert user_id(replay) == body["id"]
        logout = client.post("/api/auth/logout/", headers={"X-CSRFToken": body["csrfToken"]})
        assert logout.status_code == 204, logout.text
        problem(client.get("/api/auth/me/"), 401, secret)

    # The ended session is gone on the server, not just forgotten by this client.
    with session_client(gateway.url, session_id) as replay:
        problem(replay.get("/api/auth/me/"), 401, secret)


# -- GW-SESS-2 ----------------------------------------------------------------------------------
@pytest.mark.req("GW-SESS-2")
@pytest.mark.parametrize("who", ["wrong-password", "unknown-user"])
def test_gw_sess_2_wrong_credentials_get_401_and_no_session(
    gateway: Running, alice: User, secret: str, who: str
) -> None:
    user = (
        User(alice.username, alice.password + "x")
        if who == "wrong-password"
        else User("nobody-" + secrets.token_hex(4), alice.password)
    )
    with anonymous(gateway.url) as client:
        refused = post_login(client, user, client.headers["X-CSRFToken"])
        problem(refused, 401, secret)
        assert "sessionid" not in refused.cookies
        problem(client.get("/api/auth/me/"), 401, secret)


# -- GW-SESS-3 ----------------------------------------------------------------------------------
@pytest.mark.req("GW-SESS-3")
@pytest.mark.parametrize("route", route_params())
def test_gw_sess_3_anonymous_requests_get_401_without_redirect_or_upstream_call(
    anon_client: httpx.Client, fake_service: FakeControl, secret: str, route: ProxiedRoute
) -> None:
    token = fake_service.behave(reply={"reply": "must not be seen", "usage": {}})
    request = route.build(anon_client, token)
    sent = anon_client.send(request, follow_redirects=False)
    problem(sent, 401, secret)
    assert "location" not in sent.headers, f"401 carries a redirect: {sent.headers['location']}"
    assert_not_contacted(fake_service)


# -- GW-SESS-4 ----------------------------------------------------------------------------------
@pytest.mark.req("GW-SESS-4")
@pytest.mark.parametrize("csrf", ["missing", "wrong"])
@pytest.mark.parametrize("route", route_params())
def test_gw_sess_4_unsafe_requests_without_a_valid_csrf_token_get_403(
    alice_client: httpx.Client,
    fake_service: FakeControl,
    secret: str,
    route: ProxiedRoute,
    csrf: str,
) -> None:
    token = fake_service.behave(reply={"reply": "must not be seen", "usage": {}})
    request = route.build(alice_client, token)
    if csrf == "missing":
        del request.headers["X-CSRFToken"]
    else:
        request.headers["X-CSRFToken"] = random_csrf_token()
    problem(alice_client.send(request), 403, secret)
    assert_not_contacted(fake_service)
    # The session itself is intact: only the token was wrong.
    assert user_id(alice_client)


@pytest.mark.req("GW-SESS-4")
def test_gw_sess_4_logout_and_login_without_a_csrf_token_get_403(
    gateway: Running, alice: User, secret: str
) -> None:
    with logged_in(gateway.url, alice) as client:
        del client.headers["X-CSRFToken"]
        problem(client.post("/api/auth/logout/"), 403, secret)
        assert user_id(client), "a logout without a CSRF token ended the session"
    with http_client(gateway.url) as fresh:
        fresh.get("/api/auth/csrf/").raise_for_status()
        refused = fresh.post(
            "/api/auth/login/", json={"username": alice.username, "password": alice.password}
        )
        problem(refused, 403, secret)
        problem(fresh.get("/api/auth/me/"), 401, secret)


# -- GW-SESS-5 ----------------------------------------------------------------------------------
@pytest.mark.req("GW-SESS-5")
def test_gw_sess_5_a_planted_session_id_is_replaced_at_login(
    gateway: Running, alice: User, secret: str
) -> None:
    planted = "a" * 8 + secrets.token_hex(12)  # 32 chars, the shape of a Django session key
    with anonymous(gateway.url) as client:
        client.cookies.set("sessionid", planted, domain=LOOPBACK)
        assert planted in client.build_request("GET", "/api/auth/me/").headers["cookie"]
        response = post_login(client, alice, client.headers["X-CSRFToken"])
        assert response.status_code == 200, response.text
        after = response.cookies.get("sessionid")
        assert after, "login set no new sessionid: the session id chosen before it is kept"
        assert after != planted, "login kept the session id chosen before it (session fixation)"
    with session_client(gateway.url, after) as victim:
        assert user_id(victim)
    with session_client(gateway.url, planted) as attacker:
        problem(attacker.get("/api/auth/me/"), 401, secret)


@pytest.mark.req("GW-SESS-5")
def test_gw_sess_5_logging_in_again_rotates_a_real_session_key(
    gateway: Running, alice: User, secret: str
) -> None:
    with logged_in(gateway.url, alice) as client:
        before = client.cookies["sessionid"]
        again = post_login(client, alice, client.headers["X-CSRFToken"])
        assert again.status_code == 200, again.text
        after = again.cookies.get("sessionid")
        assert after, "logging in again set no new sessionid"
        assert after != before, "login did not rotate the session key"
    with session_client(gateway.url, after) as current:
        assert user_id(current)
    with session_client(gateway.url, before) as replay:
        problem(replay.get("/api/auth/me/"), 401, secret)


# -- GW-SESS-6 ----------------------------------------------------------------------------------
@pytest.mark.req("GW-SESS-6")
def test_gw_sess_6_listed_origin_gets_cors_with_credentials(gateway: Running) -> None:
    with http_client(gateway.url) as client:
        plain = client.get("/api/auth/csrf/", headers={"Origin": ALLOWED_ORIGIN})
        assert plain.status_code == 200
        assert plain.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
        assert plain.headers.get("access-control-allow-credentials") == "true"

        answered = preflight(client, ALLOWED_ORIGIN)
        assert answered.status_code in (200, 204), answered.text
        assert answered.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
        assert answered.headers.get("access-control-allow-credentials") == "true"
        methods = answered.headers.get("access-control-allow-methods", "").upper()
        assert "POST" in [m.strip() for m in methods.split(",")], methods
        allowed = answered.headers.get("access-control-allow-headers", "").lower()
        names = {h.strip() for h in allowed.split(",")}
        assert {"content-type", "x-csrftoken"} <= names, allowed


@pytest.mark.req("GW-SESS-6")
@pytest.mark.parametrize("kind", ["request", "preflight"])
def test_gw_sess_6_unlisted_origin_gets_no_cors_headers(gateway: Running, kind: str) -> None:
    with http_client(gateway.url) as client:
        if kind == "request":
            response = client.get("/api/auth/csrf/", headers={"Origin": EVIL_ORIGIN})
        else:
            response = preflight(client, EVIL_ORIGIN)
        assert cors_headers(response) == {}, cors_headers(response)


def assert_cors_for(response: httpx.Response, origin: str) -> None:
    """The headers that let a page of ``origin`` read ``response`` with its credentials."""
    found = cors_headers(response)
    assert found.get("access-control-allow-origin") == origin, (
        f"a {response.status_code} answer lacks CORS for {origin}: {found}"
    )
    assert found.get("access-control-allow-credentials") == "true", (
        f"a {response.status_code} answer does not allow credentials: {found}"
    )


@pytest.mark.req("GW-SESS-6")
@pytest.mark.parametrize("route", route_params())
def test_gw_sess_6_listed_origin_gets_cors_on_proxied_answers_and_their_errors(
    gateway: Running,
    alice_client: httpx.Client,
    fake_service: FakeControl,
    secret: str,
    route: ProxiedRoute,
) -> None:
    origin = {"Origin": ALLOWED_ORIGIN}
    answered = route.call(alice_client, fake_service.behave(), headers=origin)
    assert answered.status_code == 200, answered.text
    assert_cors_for(answered, ALLOWED_ORIGIN)
    # An error the gateway makes of the service's failure (GW-PROXY-7: 502).
    failed = route.call(alice_client, fake_service.behave(status=500), headers=origin)
    problem(failed, 502, secret)
    assert_cors_for(failed, ALLOWED_ORIGIN)
    # The page's user is not logged in: the 401 must be readable by the page too.
    with anonymous(gateway.url) as client:
        token = fake_service.behave(reply={"reply": "must not be seen", "usage": {}})
        refused = route.call(client, token, headers=origin)
    problem(refused, 401, secret)
    assert_cors_for(refused, ALLOWED_ORIGIN)
    assert_not_contacted(fake_service, token)


@pytest.mark.req("GW-SESS-6")
def test_gw_sess_6_listed_origin_gets_cors_on_a_rate_limited_proxied_request(
    start_gateway: Callable[..., Running], alice: User, fake_service: FakeControl, secret: str
) -> None:
    # One request a day per bucket: a second request to a bucket is refused (LIMIT-4). A few
    # more are sent before giving up: a gateway of several workers that count apart (the
    # seed's sync deployment, a known LIMIT-4 failure) still refuses one, and its CORS
    # headers are what this test is about.
    running = start_gateway(chat_rate="1/d", quiz_rate="1/d")
    origin = {"Origin": ALLOWED_ORIGIN}
    with Session.of(running.url, alice).client() as client:
        for proxied in proxied_routes():
            statuses = []
            for _ in range(4):
                response = proxied.call(client, fake_service.behave(), headers=origin)
                statuses.append(response.status_code)
                assert_cors_for(response, ALLOWED_ORIGIN)
                if response.status_code == 429:
                    problem(response, 429, secret)
                    break
            assert statuses[-1] == 429, f"{proxied}: no request was refused: {statuses}"


@pytest.mark.req("GW-SESS-6")
@pytest.mark.parametrize("route", route_params())
def test_gw_sess_6_unlisted_origin_gets_no_cors_headers_from_proxied_routes(
    gateway: Running, alice_client: httpx.Client, fake_service: FakeControl, route: ProxiedRoute
) -> None:
    evil = {"Origin": EVIL_ORIGIN}
    token = fake_service.behave(reply={"reply": "must not be seen", "usage": {}})
    with anonymous(gateway.url) as client:
        anonymous_answer = route.call(client, token, headers=evil)
    logged_in_answer = route.call(alice_client, token, headers=evil)
    for response in (anonymous_answer, logged_in_answer):
        assert cors_headers(response) == {}, (
            f"a {response.status_code} answer to {EVIL_ORIGIN} has {cors_headers(response)}"
        )


# -- GW-SESS-7 ----------------------------------------------------------------------------------
@pytest.mark.req("GW-SESS-7")
def test_gw_sess_7_unsafe_request_from_listed_origin_succeeds_and_unlisted_gets_403(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str
) -> None:
    token = fake_service.behave(reply={"reply": "from a trusted origin", "usage": {}})
    trusted = CHAT.call(alice_client, token, headers={"Origin": ALLOWED_ORIGIN})
    assert trusted.status_code == 200, trusted.text
    assert trusted.json()["reply"] == "from a trusted origin"

    other = fake_service.behave(reply={"reply": "must not be seen", "usage": {}})
    problem(CHAT.call(alice_client, other, headers={"Origin": EVIL_ORIGIN}), 403, secret)
    assert_not_contacted(fake_service, other)


@pytest.mark.req("GW-SESS-7", "GW-SESS-6")
def test_gw_sess_7_trusted_origins_follow_the_configured_cors_origins(
    start_gateway: Callable[..., Running], alice: User, fake_service: FakeControl, secret: str
) -> None:
    other_origin = start_gateway(cors_origins=CUSTOM_ORIGIN)  # needs only this knob
    token = fake_service.behave(reply={"reply": "custom origin", "usage": {}})
    with logged_in(other_origin.url, alice) as client:
        allowed = CHAT.call(client, token, headers={"Origin": CUSTOM_ORIGIN})
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers.get("access-control-allow-origin") == CUSTOM_ORIGIN
        assert allowed.headers.get("access-control-allow-credentials") == "true"
        # The default origin is not hard-coded: it is not listed in this gateway.
        other = fake_service.behave(reply={"reply": "must not be seen", "usage": {}})
        refused = CHAT.call(client, other, headers={"Origin": ALLOWED_ORIGIN})
        problem(refused, 403, secret)
        assert cors_headers(refused) == {}
        assert_not_contacted(fake_service, other)
        assert cors_headers(preflight(client, ALLOWED_ORIGIN)) == {}


# -- GW-SESS-8 ----------------------------------------------------------------------------------
def log_out(browser: httpx.Client, user: User) -> None:
    response = browser.post("/api/auth/logout/")
    assert response.status_code == 204, response.text


def log_in_again(browser: httpx.Client, user: User) -> None:
    """Log in again on a logged-in browser: the login rotates the session key (GW-SESS-5)."""
    response = post_login(browser, user, browser.headers["X-CSRFToken"])
    assert response.status_code == 200, response.text
    browser.headers["X-CSRFToken"] = csrf_token(browser.cookies, response)


ENDINGS: dict[str, Callable[[httpx.Client, User], None]] = {
    "logout": log_out,
    "login-again": log_in_again,
}


def with_fresh_csrf(kept: Session) -> Session:
    """``kept``'s cookies with a CSRF token fetched with them, so CSRF cannot be why they fail.

    A cookie the CSRF endpoint sets is taken; none is ever dropped, so the ended session's
    cookie is still presented. Each ``client()`` of the result starts from these cookies.
    """
    with kept.client() as client:
        response = client.get("/api/auth/csrf/")
    assert response.status_code == 200, response.text
    cookies = httpx.Cookies(kept.cookies)
    for cookie in response.cookies.jar:
        cookies.jar.set_cookie(cookie)
    return Session(kept.base_url, cookies, csrf_token(cookies, response))


@pytest.mark.req("GW-SESS-8")
@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("route", route_params())
def test_gw_sess_8_an_ended_session_is_refused_at_once_on_every_proxied_route(
    gateway: Running,
    alice: User,
    fake_service: FakeControl,
    secret: str,
    route: ProxiedRoute,
    ending: str,
) -> None:
    with logged_in(gateway.url, alice) as browser:
        # What a copy of the session cookie (another tab, a stolen cookie) presents later.
        kept = Session(gateway.url, httpx.Cookies(browser.cookies), browser.headers["X-CSRFToken"])
        with kept.client() as client:
            used = route.call(client, fake_service.behave())
        # The kept cookies carry the session, and it was used on this route just now:
        # a gateway that caches verified sessions holds it.
        assert used.status_code == 200, used.text

        ENDINGS[ending](browser, alice)

        stale = with_fresh_csrf(kept)
        token = fake_service.behave(reply={"reply": "must not be seen", "usage": {}})
        with stale.client() as client:
            refused = route.call(client, token)
        problem(refused, 401, secret)
        assert_not_contacted(fake_service, token)
        with stale.client() as client:
            problem(client.get("/api/auth/me/"), 401, secret)
        if ending == "login-again":
            # The browser's new session is the one that works.
            again = route.call(browser, fake_service.behave())
            assert again.status_code == 200, again.text
