"""SVC-AUTH: the service trusts only requests that carry the shared secret."""

from __future__ import annotations

import secrets as random_secrets
from collections.abc import Callable, Iterator

import httpx
import pytest

from harness.client import assert_problem, http_client
from harness.fakes import FakeControl, new_token
from harness.plug import Plug
from harness.processes import ManagedProcess
from harness.system import Fake, Harness, Running

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
    client: httpx.Client,
    method: str,
    path: str,
    token: str,
    headers: object,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    return client.request(
        method, path, headers=headers, params=params, **request_kwargs(path, token)
    )


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
    # A digit in place of the last character: never a mere change of letter case (that is
    # SVC-AUTH-7's), so a case-insensitive service is not failed here by chance.
    other = secret[:-1] + ("0" if secret[-1] != "0" else "1")
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
    # Judged by the gate alone: a secret is accepted when the route runs (no 401/403, and
    # the LLM got the request); what the LLM answered is other requirements' business.
    previous = f"old-{random_secrets.token_urlsafe(24)}"
    rotated = start_service(previous_secret=previous)
    with http_client(rotated.url) as client:
        for op in PROTECTED:
            for which, value in (("current", secret), ("previous", previous)):
                token = new_token()
                response = _send(client, *op, token, {SECRET_HEADER: value})
                assert response.status_code not in (401, 403), (
                    f"{_ids(op)} refused the {which} secret during rotation: "
                    f"{response.status_code} {response.text[:300]}"
                )
                assert fake_llm.requests(token), (
                    f"{_ids(op)} answered {response.status_code} to the {which} secret "
                    "but never called the LLM"
                )
        third = f"other-{random_secrets.token_urlsafe(24)}"
        token = new_token()
        response = _send(client, "POST", ROUTES["chat"], token, {SECRET_HEADER: third})
        assert_problem(response, 403)
    assert fake_llm.requests(token) == [], "a secret that is neither current nor previous ran"


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


# -- SVC-AUTH-7 ---------------------------------------------------------------------------------
# A service of the test's own, with a secret known to hold upper- and lower-case letters (the
# run's secret is random), so the case tests are deterministic; it also keeps the run's secret
# out of URLs the service might log (SEC-2 searches the logs for it).
OWN_SECRET_PREFIX = "CaseMatters-"


@pytest.fixture(scope="module")
def own_secret_service(harness: Harness, fake_llm_server: Fake) -> Iterator[tuple[Running, str]]:
    """The service started with a secret of this module's own: (the service, its secret)."""
    own = OWN_SECRET_PREFIX + random_secrets.token_urlsafe(24)
    running = harness.start_service(fake_llm_server.url + "/v1", secret=own)
    yield running, own
    running.process.stop()


@pytest.fixture
def own_client(own_secret_service: tuple[Running, str]) -> Iterator[httpx.Client]:
    """A client of ``own_secret_service`` that sends no secret of its own."""
    with http_client(own_secret_service[0].url) as client:
        yield client


QUERY_NAMES = [
    "secret",
    "x-internal-secret",
    "X-Internal-Secret",
    "x_internal_secret",
    "token",
    "api_key",
]


def _elsewhere(secret: str) -> dict[str, tuple[dict[str, str], list[tuple[str, str]]]]:
    """The right secret everywhere but in ``X-Internal-Secret``: (query params, headers)."""
    placed: dict[str, tuple[dict[str, str], list[tuple[str, str]]]] = {
        f"query-{name}": ({name: secret}, []) for name in QUERY_NAMES
    }
    placed.update(
        {
            f"cookie-{name}": ({}, [("Cookie", f"{name}={secret}")])
            for name in ("X-Internal-Secret", "secret")
        }
    )
    placed["authorization-bearer"] = ({}, [("Authorization", f"Bearer {secret}")])
    placed["authorization-bare"] = ({}, [("Authorization", secret)])
    for name in ("X-Secret", "X-Api-Key", "X_Internal_Secret"):
        placed[f"header-{name}"] = ({}, [(name, secret)])
    return placed


ELSEWHERE_KINDS = list(_elsewhere("x" * 8))


def _flip_first(secret: str, pick: Callable[[str], bool]) -> str:
    """``secret`` with the case of its first letter that ``pick`` selects flipped."""
    at = next(i for i, char in enumerate(secret) if char.isascii() and pick(char))
    return secret[:at] + secret[at].swapcase() + secret[at + 1 :]


def _near_misses(secret: str) -> dict[str, str]:
    """Values that differ from ``secret`` only in letter case, or by a prefix or suffix."""
    return {
        "every-letter-case-flipped": secret.swapcase(),
        "one-upper-case-letter-lowered": _flip_first(secret, str.isupper),
        "one-lower-case-letter-raised": _flip_first(secret, str.islower),
        "prefix": f"x{secret}",
        "prefix-bearer": f"Bearer {secret}",
        "suffix": f"{secret}x",
        "suffix-list": f"{secret},x",
    }


NEAR_MISS_KINDS = list(_near_misses(OWN_SECRET_PREFIX))


@pytest.mark.req("SVC-AUTH-7")
@pytest.mark.parametrize("op", PROTECTED, ids=_ids)
def test_svc_auth_7_the_secret_in_its_header_is_accepted(
    own_client: httpx.Client,
    own_secret_service: tuple[Running, str],
    fake_llm: FakeControl,
    op: tuple[str, str],
) -> None:
    # The control of the tests below: their service does accept its secret in the header.
    token = new_token()
    response = _send(own_client, *op, token, {SECRET_HEADER: own_secret_service[1]})
    assert response.status_code not in (401, 403), (response.status_code, response.text[:300])
    assert fake_llm.requests(token), f"{_ids(op)} accepted the secret but never called the LLM"


@pytest.mark.req("SVC-AUTH-7")
@pytest.mark.parametrize("kind", ELSEWHERE_KINDS)
@pytest.mark.parametrize("op", PROTECTED, ids=_ids)
def test_svc_auth_7_secret_outside_its_header_is_401(
    own_client: httpx.Client,
    own_secret_service: tuple[Running, str],
    fake_llm: FakeControl,
    op: tuple[str, str],
    kind: str,
) -> None:
    token = new_token()
    params, headers = _elsewhere(own_secret_service[1])[kind]
    response = _send(own_client, *op, token, headers, params=params)
    assert_problem(response, 401)
    assert fake_llm.requests(token) == [], f"the secret in {kind} was taken: the route ran"


@pytest.mark.req("SVC-AUTH-7")
@pytest.mark.parametrize("kind", NEAR_MISS_KINDS)
@pytest.mark.parametrize("op", PROTECTED, ids=_ids)
def test_svc_auth_7_secret_differing_in_case_prefix_or_suffix_is_403(
    own_client: httpx.Client,
    own_secret_service: tuple[Running, str],
    fake_llm: FakeControl,
    op: tuple[str, str],
    kind: str,
) -> None:
    token = new_token()
    value = _near_misses(own_secret_service[1])[kind]
    assert value != own_secret_service[1]
    response = _send(own_client, *op, token, [(SECRET_HEADER, value)])
    assert_problem(response, 403)
    assert fake_llm.requests(token) == [], f"a {kind} of the secret was accepted: the route ran"
