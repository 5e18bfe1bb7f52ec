"""GW-PROXY-2..6: which headers the gateway sends upstream and which it returns to the client."""

from __future__ import annotations

import httpx
import pytest

from contract_tests.gateway.conftest import (
    REQUEST_ID,
    one_request,
    only_value,
    route_params,
    user_id,
)
from harness.client import assert_no_leak
from harness.fakes import FakeControl, Record, header_values
from harness.spec import ProxiedRoute, proxied_routes, route, trusted_headers

CHAT = route("chat")
STREAM = route("chat_stream")
#: The routes with a JSON body: the service's answer headers are set by its behaviour.
JSON_ROUTES = proxied_routes(uploads=False)

OK_REPLY = {
    "reply": "fine",
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def send(
    client: httpx.Client, route: ProxiedRoute, token: str, headers: list[tuple[str, str]]
) -> httpx.Response:
    """Call ``route`` with extra headers (duplicates kept, in order); expect 200."""
    response = route.call(client, token, headers=headers)
    assert response.status_code == 200, response.text
    return response


def behaviour_for(route: ProxiedRoute, **fields: object) -> dict[str, object]:
    """Fields that make the fake answer ``route`` successfully (a reply, or a stream)."""
    return fields if route.streams else {"reply": OK_REPLY, **fields}


def all_values(record: Record) -> list[str]:
    return [value for _, value in record["headers"]]


# -- GW-PROXY-2 ---------------------------------------------------------------------------------
@pytest.mark.req("GW-PROXY-2")
@pytest.mark.parametrize("route", route_params())
def test_gw_proxy_2_secret_is_sent_upstream_once_and_never_returned(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str, route: ProxiedRoute
) -> None:
    token = fake_service.behave(times=1)
    response = route.call(alice_client, token)
    assert response.status_code == 200, response.text
    assert_no_leak(response, secret)
    record = one_request(fake_service, token)
    assert only_value(record, "x-internal-secret") == secret


@pytest.mark.req("GW-PROXY-2")
@pytest.mark.parametrize("route", route_params(JSON_ROUTES))
def test_gw_proxy_2_secret_echoed_by_the_service_does_not_reach_the_client(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str, route: ProxiedRoute
) -> None:
    echo = [["X-Internal-Secret", secret], ["X-Debug-Secret", f"secret={secret}"]]
    token = fake_service.behave(**behaviour_for(route, headers=echo))
    response = route.call(alice_client, token)
    assert response.status_code == 200, response.text
    assert_no_leak(response, secret)
    assert "x-internal-secret" not in response.headers


# -- GW-PROXY-3 ---------------------------------------------------------------------------------
#: What the service trusts and which names only a gateway may send (spec/service.openapi.yaml).
TRUSTED = trusted_headers()


def spoofed_headers() -> list[tuple[str, str]]:
    """A client's try at every trusted header and at each gateway-only prefix, twice each.

    Each value is unique, so wherever it turns up at the service it is the client's.
    """
    names = [*TRUSTED.names, *(f"{prefix}Spoofed" for prefix in TRUSTED.prefixes)]
    names += ["X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-User", "X-User-Role"]
    return [
        (name if n == 0 else name.lower(), f"spoofed-{i}-{n}")
        for i, name in enumerate(dict.fromkeys(names))
        for n in range(2)
    ]


@pytest.mark.req("GW-PROXY-3")
@pytest.mark.parametrize("route", route_params())
def test_gw_proxy_3_no_client_value_of_a_header_the_service_trusts_reaches_it(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str, route: ProxiedRoute
) -> None:
    alice_id = user_id(alice_client)
    token = fake_service.behave(times=1)
    spoofed = spoofed_headers()
    send(alice_client, route, token, spoofed)
    record = one_request(fake_service, token)
    assert only_value(record, "x-internal-secret") == secret
    assert only_value(record, "x-user-id") == str(alice_id)
    reached = [(n, v) for n, v in record["headers"] if "spoofed-" in v]
    assert reached == [], f"client-supplied headers reached the service: {reached}"


@pytest.mark.req("GW-PROXY-3")
def test_gw_proxy_3_each_user_is_identified_by_their_own_session(
    alice_client: httpx.Client, bob_client: httpx.Client, fake_service: FakeControl
) -> None:
    alice_id, bob_id = user_id(alice_client), user_id(bob_client)
    assert alice_id != bob_id
    for client, expected in ((bob_client, bob_id), (alice_client, alice_id), (bob_client, bob_id)):
        token = fake_service.behave(times=1)
        # Bob claims to be alice and the other way round: the session wins.
        claim = str(alice_id if expected == bob_id else bob_id)
        send(client, CHAT, token, [("X-User-Id", claim)])
        assert only_value(one_request(fake_service, token), "x-user-id") == str(expected)


# -- GW-PROXY-4 ---------------------------------------------------------------------------------
@pytest.mark.req("GW-PROXY-4")
@pytest.mark.parametrize("route", route_params())
def test_gw_proxy_4_cookies_authorization_and_csrf_stay_at_the_gateway(
    alice_client: httpx.Client, fake_service: FakeControl, route: ProxiedRoute
) -> None:
    token = fake_service.behave(times=1)
    send(alice_client, route, token, [("Authorization", "Bearer client-token-4b1d")])
    record = one_request(fake_service, token)
    names = [name for name, _ in record["headers"]]
    for name in ("cookie", "authorization", "x-csrftoken", "proxy-authorization"):
        assert name not in names, f"{name} reached the service"
    private = [
        alice_client.cookies["sessionid"],
        alice_client.cookies["csrftoken"],
        alice_client.headers["X-CSRFToken"],
        "client-token-4b1d",
    ]
    for value in all_values(record):
        for secret_value in private:
            assert secret_value not in value, "session or credential data reached the service"
    assert alice_client.cookies["sessionid"] not in record["body"]


@pytest.mark.req("GW-PROXY-4")
@pytest.mark.parametrize("route", route_params((CHAT, STREAM)))
def test_gw_proxy_4_cookies_set_by_the_service_are_neither_kept_nor_returned(
    alice_client: httpx.Client,
    bob_client: httpx.Client,
    fake_service: FakeControl,
    route: ProxiedRoute,
) -> None:
    cookie = [["Set-Cookie", "svc=alice-cookie; Path=/"], ["Set-Cookie", "svc2=more; Path=/api"]]
    token = fake_service.behave(times=1, **behaviour_for(route, headers=cookie))
    response = route.call(alice_client, token)
    assert response.status_code == 200, response.text
    for value in response.headers.get_list("set-cookie"):
        assert "svc" not in value, f"the service's cookie reached the client: {value}"

    # Neither alice's next request nor bob's carries the service's cookie back.
    for client in (alice_client, bob_client):
        later = fake_service.behave(times=1)
        assert CHAT.call(client, later).status_code == 200
        record = one_request(fake_service, later)
        assert header_values(record, "cookie") == [], "a cookie jar replays service cookies"
        assert "alice-cookie" not in str(record["headers"])


# -- GW-PROXY-5 ---------------------------------------------------------------------------------
# Hop-by-hop fields (RFC 9110 section 7.6.1, plus the proxy credentials) that a client
# can send and that reach the gateway application: uvicorn consumes Transfer-Encoding
# itself and treats Upgrade as a protocol switch, so those two are left out.
CLIENT_HOP = [
    ("Connection", "keep-alive, X-Hop-Test"),
    ("X-Hop-Test", "client-hop-1"),
    ("Keep-Alive", "timeout=99, max=7"),
    ("TE", "trailers"),
    ("Proxy-Authorization", "Basic cHJveHk6aG9w"),
    ("Proxy-Connection", "keep-alive"),
]

# What the service can answer that uvicorn passes through unchanged (fakes/service/__init__.py).
SERVICE_HOP = [
    ["Connection", "X-Svc-Hop"],
    ["X-Svc-Hop", "service-hop-1"],
    ["Keep-Alive", "timeout=77"],
    ["Proxy-Authenticate", "Basic realm=svc"],
    ["Upgrade", "svc-proto/1"],
]


@pytest.mark.req("GW-PROXY-5")
@pytest.mark.parametrize("route", route_params())
def test_gw_proxy_5_hop_by_hop_headers_of_the_client_do_not_reach_the_service(
    alice_client: httpx.Client, fake_service: FakeControl, route: ProxiedRoute
) -> None:
    token = fake_service.behave(times=1)
    send(alice_client, route, token, CLIENT_HOP)
    record = one_request(fake_service, token)
    for name in ("x-hop-test", "keep-alive", "te", "proxy-authorization", "proxy-connection"):
        assert header_values(record, name) == [], f"client's {name} reached the service"
    for value in header_values(record, "connection"):
        assert "x-hop-test" not in value.lower(), (
            f"client's Connection reached the service: {value}"
        )
    for value in all_values(record):
        assert "timeout=99" not in value
        assert "client-hop-1" not in value


@pytest.mark.req("GW-PROXY-5")
@pytest.mark.parametrize("route", route_params(JSON_ROUTES))
def test_gw_proxy_5_hop_by_hop_headers_of_the_service_do_not_reach_the_client(
    alice_client: httpx.Client, fake_service: FakeControl, route: ProxiedRoute
) -> None:
    token = fake_service.behave(**behaviour_for(route, headers=SERVICE_HOP))
    response = route.call(alice_client, token)
    assert response.status_code == 200, response.text
    for name in ("x-svc-hop", "keep-alive", "proxy-authenticate", "upgrade"):
        assert name not in response.headers, f"service's {name} reached the client"
    for value in response.headers.get_list("connection"):
        assert "x-svc-hop" not in value.lower(), f"service's Connection reached the client: {value}"


#: The service names headers in its Connection header: they are for the hop between it and
#: the gateway, whatever they are (Content-Language would be relayed otherwise).
CONNECTION_NAMED = [
    ["Connection", "content-language, x-debug"],
    ["Content-Language", "de"],
    ["X-Debug", "1"],
]


@pytest.mark.req("GW-PROXY-5")
@pytest.mark.parametrize("answer", ["success", "error"])
@pytest.mark.parametrize("route", route_params())
def test_gw_proxy_5_headers_the_service_names_in_connection_do_not_reach_the_client(
    alice_client: httpx.Client, fake_service: FakeControl, route: ProxiedRoute, answer: str
) -> None:
    """On every route, for an answer relayed as it came (JSON or stream) and a relayed 4xx."""
    if answer == "success":
        token = fake_service.behave(**behaviour_for(route, headers=CONNECTION_NAMED))
        expected = 200
    else:
        token = fake_service.behave(status=422, headers=CONNECTION_NAMED)
        expected = 422  # GW-PROXY-7: a service 4xx keeps its status and problem body
    response = route.call(alice_client, token)
    assert response.status_code == expected, response.text
    for name in ("content-language", "x-debug"):
        assert name not in response.headers, (
            f"the service named {name} in Connection, yet it reached the client: "
            f"{response.headers.get(name)!r}"
        )
    for value in response.headers.get_list("connection"):
        assert "x-debug" not in value.lower(), f"service's Connection reached the client: {value}"


# -- GW-PROXY-6 ---------------------------------------------------------------------------------
@pytest.mark.req("GW-PROXY-6")
@pytest.mark.parametrize("route", route_params())
def test_gw_proxy_6_a_well_formed_request_id_is_kept_both_ways(
    alice_client: httpx.Client, fake_service: FakeControl, route: ProxiedRoute
) -> None:
    rid = f"abc-123.{route.operation_id}:X_9"
    token = fake_service.behave(times=1)
    response = send(alice_client, route, token, [("X-Request-ID", rid)])
    assert response.headers.get("x-request-id") == rid
    assert only_value(one_request(fake_service, token), "x-request-id") == rid


@pytest.mark.req("GW-PROXY-6")
@pytest.mark.parametrize("route", route_params(JSON_ROUTES))
def test_gw_proxy_6_a_missing_request_id_is_generated_and_returned(
    alice_client: httpx.Client, fake_service: FakeControl, route: ProxiedRoute
) -> None:
    seen = set()
    for _ in range(2):
        token = fake_service.behave(times=1)
        response = route.call(alice_client, token)
        assert response.status_code == 200, response.text
        upstream = only_value(one_request(fake_service, token), "x-request-id")
        assert REQUEST_ID.match(upstream), f"generated id is malformed: {upstream!r}"
        assert response.headers.get("x-request-id") == upstream
        seen.add(upstream)
    assert len(seen) == 2, "two requests got the same generated id"


@pytest.mark.req("GW-PROXY-6")
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("bad id with spaces", id="spaces"),
        pytest.param("a" * 300, id="300-chars"),
        pytest.param("id;drop<table>", id="punctuation"),
        pytest.param("a" * 129, id="129-chars"),
    ],
)
def test_gw_proxy_6_a_malformed_request_id_is_replaced(
    alice_client: httpx.Client, fake_service: FakeControl, bad: str
) -> None:
    token = fake_service.behave(times=1)
    response = send(alice_client, CHAT, token, [("X-Request-ID", bad)])
    upstream = only_value(one_request(fake_service, token), "x-request-id")
    assert upstream != bad
    assert REQUEST_ID.match(upstream), f"replacement id is malformed: {upstream!r}"
    assert response.headers.get("x-request-id") == upstream


@pytest.mark.req("GW-PROXY-6")
def test_gw_proxy_6_error_responses_carry_the_request_id(
    alice_client: httpx.Client, fake_service: FakeControl
) -> None:
    token = fake_service.behave(status=500)
    response = alice_client.post(
        CHAT.path, json={"message": token}, headers={"X-Request-ID": "err-42"}
    )
    assert response.status_code == 502, response.text
    assert response.headers.get("x-request-id") == "err-42"
    assert only_value(one_request(fake_service, token), "x-request-id") == "err-42"
