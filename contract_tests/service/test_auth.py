"""SVC-AUTH: the service trusts only requests that carry the shared secret."""

from __future__ import annotations

import secrets as random_secrets
from collections.abc import Callable

import httpx
import pytest

from harness.client import assert_problem, http_client
from harness.fakes import FakeControl, new_token
from harness.plug import Plug
from harness.processes import ManagedProcess
from harness.system import Fake, Running

from ._helpers import (
    ROUTES,
    SECRET_HEADER,
    operations,
    protected_operations,
    raw_exchange,
    request_kwargs,
    resolve,
)

PLACEHOLDER = "change-me-in-production-secret-key"
PROTECTED = protected_operations()


def _ids(op: tuple[str, str]) -> str:
    return f"{op[0]} {op[1]}"


def _send(
    client: httpx.Client, method: str, path: str, token: str, headers: object
) -> httpx.Response:
    return client.request(method, path, headers=headers, **request_kwargs(path, token))


# -- SVC-AUTH-1 ---------------------------------------------------------------------------------
@pytest.mark.req("SVC-AUTH-1")
@pytest.mark.parametrize("header", [None, ""], ids=["missing", "empty"])
@pytest.mark.parametrize("op", PROTECTED, ids=_ids)
def test_svc_auth_1_route_without_secret_is_401(
    anon_client: httpx.Client, fake_llm: FakeControl, op: tuple[str, str], header: str | None
) -> None:
    token = new_token()
    headers = [] if header is None else [(SECRET_HEADER, header)]
    response = _send(anon_client, *op, token, headers)
    assert_problem(response, 401)
    assert fake_llm.requests(token) == [], "the route ran and called the LLM"


@pytest.mark.req("SVC-AUTH-1")
def test_svc_auth_1_health_needs_no_secret(anon_client: httpx.Client) -> None:
    assert anon_client.get("/health").status_code == 200


# -- SVC-AUTH-2 ---------------------------------------------------------------------------------
def _bad_headers(secret: str) -> dict[str, list[tuple[str, str | bytes]]]:
    other = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    return {
        "wrong": [(SECRET_HEADER, other)],
        "prefix": [(SECRET_HEADER, secret[:-1])],
        "longer": [(SECRET_HEADER, secret + "x")],
        "twice-correct": [(SECRET_HEADER, secret), (SECRET_HEADER, secret)],
        "correct-then-wrong": [(SECRET_HEADER, secret), (SECRET_HEADER, other)],
        "wrong-then-correct": [(SECRET_HEADER, other), (SECRET_HEADER, secret)],
        "non-ascii": [(SECRET_HEADER, b"s\xc3\xa9cret")],
        "secret-plus-non-ascii": [(SECRET_HEADER, secret.encode() + b"\xc3\xa9")],
        "latin-1": [(SECRET_HEADER, b"\xff\xfe" + secret.encode()[2:])],
    }


BAD_HEADER_KINDS = list(_bad_headers("x" * 8))


@pytest.mark.req("SVC-AUTH-2")
@pytest.mark.parametrize("kind", BAD_HEADER_KINDS)
@pytest.mark.parametrize("op", PROTECTED, ids=_ids)
def test_svc_auth_2_wrong_duplicate_or_non_ascii_secret_is_403(
    anon_client: httpx.Client,
    fake_llm: FakeControl,
    secret: str,
    op: tuple[str, str],
    kind: str,
) -> None:
    token = new_token()
    response = _send(anon_client, *op, token, _bad_headers(secret)[kind])
    assert_problem(response, 403)
    assert fake_llm.requests(token) == [], "the route ran and called the LLM"


# -- SVC-AUTH-3 ---------------------------------------------------------------------------------
def _head(path: str, port: int, framing: str, extra: str = "") -> bytes:
    length = (
        "Transfer-Encoding: chunked\r\n" if framing == "chunked" else "Content-Length: 50000000\r\n"
    )
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\n{length}{extra}\r\n"
    ).encode()


def _partial_body(token: str, framing: str) -> bytes:
    start = f'{{"message": "{token} '.encode() + b"x" * 4000
    return b"%x\r\n%s\r\n" % (len(start), start) if framing == "chunked" else start


@pytest.mark.req("SVC-AUTH-3")
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("op", PROTECTED, ids=_ids)
def test_svc_auth_3_unfinished_large_body_without_secret_is_refused_unread(
    service: Running, fake_llm: FakeControl, op: tuple[str, str], framing: str
) -> None:
    # The body is announced as 50 MB (or chunked) but never finished: a check that
    # ran after reading the body could not answer at all.
    token = new_token()
    answer = raw_exchange(
        service.port, _head(op[1], service.port, framing), _partial_body(token, framing), timeout=5
    )
    assert answer.startswith(b"HTTP/1.1 401 "), f"no 401 before the body was read: {answer!r}"
    assert fake_llm.requests(token) == []


@pytest.mark.req("SVC-AUTH-3")
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_svc_auth_3_unfinished_large_body_with_wrong_secret_is_refused_unread(
    service: Running, fake_llm: FakeControl, secret: str, framing: str
) -> None:
    token = new_token()
    wrong = f"{SECRET_HEADER}: not-{secret}\r\n"
    head = _head(ROUTES["chat"], service.port, framing, wrong)
    answer = raw_exchange(service.port, head, _partial_body(token, framing), timeout=5)
    assert answer.startswith(b"HTTP/1.1 403 "), f"no 403 before the body was read: {answer!r}"
    assert fake_llm.requests(token) == []


# -- SVC-AUTH-4 ---------------------------------------------------------------------------------
@pytest.mark.req("SVC-AUTH-4")
def test_svc_auth_4_previous_secret_is_accepted_during_rotation(
    start_service: Callable[..., Running], fake_llm: FakeControl, secret: str
) -> None:
    previous = f"old-{random_secrets.token_urlsafe(24)}"
    rotated = start_service(previous_secret=previous)
    with http_client(rotated.url) as client:
        for value in (secret, previous):
            token = fake_llm.behave(reply="rotated fine")
            response = client.post(
                "/chatbot/", json={"message": token}, headers={SECRET_HEADER: value}
            )
            assert response.status_code == 200, (value == previous, response.text)
            assert response.json()["reply"] == "rotated fine"
        third = f"other-{random_secrets.token_urlsafe(24)}"
        token = new_token()
        response = client.post("/chatbot/", json={"message": token}, headers={SECRET_HEADER: third})
        assert_problem(response, 403)
    assert fake_llm.requests(token) == []


# -- SVC-AUTH-5 ---------------------------------------------------------------------------------
def _secret_settings(plug: Plug) -> list[str]:
    """The environment variables the plug file fills with the secret (FASTAPI_SECRET here)."""
    return [name for name, value in plug.service.env.items() if value == "{secret}"]


@pytest.mark.req("SVC-AUTH-5")
@pytest.mark.parametrize(
    ("value", "debug"),
    [("", "0"), ("", "1"), (PLACEHOLDER, "0")],
    ids=["empty", "empty-in-debug", "placeholder"],
)
def test_svc_auth_5_refuses_to_start_with_a_weak_secret(
    spawn_service: Callable[..., tuple[ManagedProcess, str]],
    fake_llm_server: Fake,
    plug: Plug,
    value: str,
    debug: str,
) -> None:
    process, _ = spawn_service(fake_llm_server.url + "/v1", secret=value, debug=debug)
    code = process.wait_exit(20)
    log = process.log.read_text(encoding="utf-8", errors="replace")
    assert code is not None, f"the service kept running with secret {value!r}: {log[-2000:]}"
    assert code != 0, f"the service exited with 0 instead of failing: {log[-2000:]}"
    names = _secret_settings(plug)
    assert names, "the plug file passes the secret in no environment variable"
    assert any(name in log for name in names), f"the log does not name {names}: {log[-2000:]}"


@pytest.mark.req("SVC-AUTH-5")
def test_svc_auth_5_placeholder_secret_starts_in_debug(
    spawn_service: Callable[..., tuple[ManagedProcess, str]], fake_llm_server: Fake
) -> None:
    process, url = spawn_service(fake_llm_server.url + "/v1", secret=PLACEHOLDER, debug="1")
    process.wait_ready(url + "/health")
    with http_client(url) as client:
        response = client.post(
            "/chatbot/", json={"message": "hello"}, headers={SECRET_HEADER: PLACEHOLDER}
        )
    assert response.status_code == 200, response.text


# -- SVC-AUTH-6 ---------------------------------------------------------------------------------
@pytest.mark.req("SVC-AUTH-6")
def test_svc_auth_6_health_is_exactly_status_ok_without_secret(anon_client: httpx.Client) -> None:
    response = anon_client.get("/health")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"status": "ok"}


@pytest.mark.req("SVC-AUTH-6")
@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_svc_auth_6_api_description_requires_the_secret(
    anon_client: httpx.Client, service_client: httpx.Client, path: str
) -> None:
    assert_problem(anon_client.get(path), 401)
    assert_problem(anon_client.get(path, headers={SECRET_HEADER: "wrong"}), 403)
    assert service_client.get(path).status_code == 200


@pytest.mark.req("SVC-AUTH-6")
def test_svc_auth_6_openapi_declares_the_secret_as_api_key_scheme(
    service_client: httpx.Client,
) -> None:
    document = service_client.get("/openapi.json").json()
    schemes = resolve(document, document.get("components", {}).get("securitySchemes", {}))
    secret_schemes = {
        name
        for name, scheme in schemes.items()
        if scheme.get("type") == "apiKey"
        and scheme.get("in") == "header"
        and str(scheme.get("name", "")).lower() == SECRET_HEADER.lower()
    }
    assert secret_schemes, f"no apiKey scheme for the {SECRET_HEADER} header: {schemes}"
    live = {(m, p): op for m, p, op in operations(document)}
    for method, path in PROTECTED:
        assert (method, path) in live, f"{method} {path} is missing from /openapi.json"
        requirements = live[method, path].get("security", document.get("security", []))
        assert requirements, f"{method} {path} declares no security"
        for alternative in requirements:
            assert set(alternative) & secret_schemes, (
                f"{method} {path} can be called without the secret scheme: {requirements}"
            )
