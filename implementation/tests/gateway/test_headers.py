"""gateway/proxy/headers.py: what crosses the gateway in each direction."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.proxy.headers import (
    HOP_BY_HOP,
    connection_tokens,
    downstream_response_headers,
    strip_hop_by_hop,
    upstream_request_headers,
)

SECRET = "s3cret"
GATEWAY_SET = {"x-internal-secret", "x-user-id", "x-request-id", "accept-encoding", "user-agent"}


def upstream(incoming: list[tuple[str, str]], content_type: str | None = "application/json"):
    return upstream_request_headers(
        incoming, secret=SECRET, user_id=42, request_id="rid-1", content_type=content_type
    )


def names(headers: list[tuple[str, str]]) -> list[str]:
    return [name for name, _ in headers]


def test_connection_tokens_are_collected_from_every_connection_header() -> None:
    headers = [("Connection", "keep-alive, X-Foo"), ("connection", " x-bar ,"), ("X-Foo", "1")]
    assert connection_tokens(headers) == {"keep-alive", "x-foo", "x-bar"}


def test_hop_by_hop_and_connection_named_headers_are_stripped() -> None:
    headers = [(name.title(), "v") for name in HOP_BY_HOP] + [
        ("Connection", "x-hop"),
        ("X-Hop", "1"),
        ("X-Keep", "2"),
    ]
    assert strip_hop_by_hop(headers) == [("X-Keep", "2")]


def test_upstream_headers_carry_the_secret_user_and_request_id_once() -> None:
    incoming = [
        ("X-Internal-Secret", "forged"),
        ("x-internal-secret", "forged-again"),
        ("X-User-Id", "1"),
        ("X-Request-ID", "client-chosen"),
        ("Cookie", "sessionid=abc"),
        ("Authorization", "Bearer t"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("Forwarded", "for=10.0.0.1"),
        ("X-Internal-Anything", "x"),
        ("X-User-Role", "admin"),
        ("Accept", "text/event-stream"),
        ("Accept-Language", "de"),
        ("Content-Length", "12"),
        ("Host", "evil"),
    ]
    headers = upstream(incoming)
    as_dict = dict(headers)
    assert len(headers) == len(as_dict), f"duplicated header: {headers}"
    assert as_dict["x-internal-secret"] == SECRET
    assert as_dict["x-user-id"] == "42"
    assert as_dict["x-request-id"] == "rid-1"
    assert as_dict["accept"] == "text/event-stream"
    assert as_dict["accept-language"] == "de"
    assert as_dict["content-type"] == "application/json"
    assert as_dict["accept-encoding"] == "identity"
    for name in ("cookie", "authorization", "x-forwarded-for", "forwarded", "host"):
        assert name not in as_dict
    assert "x-internal-anything" not in as_dict
    assert "x-user-role" not in as_dict
    assert "content-length" not in as_dict


def test_upstream_headers_drop_what_connection_names() -> None:
    headers = upstream([("Connection", "accept-language"), ("Accept-Language", "de")])
    assert "accept-language" not in names(headers)


def test_upstream_multipart_content_type_is_kept_whole() -> None:
    content_type = "multipart/form-data; boundary=----abc123"
    assert dict(upstream([], content_type))["content-type"] == content_type


def test_downstream_headers_are_an_allow_list() -> None:
    headers = downstream_response_headers(
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
            ("x-accel-buffering", "no"),
            ("retry-after", "3"),
            ("content-language", "en"),
            ("set-cookie", "a=b"),
            ("x-internal-secret", SECRET),
            ("x-user-id", "42"),
            ("server", "uvicorn"),
            ("date", "today"),
            ("content-length", "10"),
            ("content-encoding", "gzip"),
            ("transfer-encoding", "chunked"),
            ("x-request-id", "upstream-id"),
        ]
    )
    assert names(headers) == [
        "content-type",
        "cache-control",
        "x-accel-buffering",
        "retry-after",
        "content-language",
    ]


def test_downstream_headers_drop_what_connection_names() -> None:
    headers = downstream_response_headers(
        [("connection", "cache-control"), ("cache-control", "private"), ("content-type", "a/b")]
    )
    assert headers == [("content-type", "a/b")]


DANGEROUS = [
    "cookie",
    "authorization",
    "x-internal-secret",
    "x-user-id",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-internal-debug",
    "x-user-email",
    "proxy-authorization",
    "connection",
    "te",
    "upgrade",
    "x-request-id",
    "accept",
    "content-type",
]
header_name = st.one_of(
    st.sampled_from(DANGEROUS),
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True),
).map(lambda name: name.swapcase() if len(name) % 2 else name)
header_value = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@given(st.lists(st.tuples(header_name, header_value), max_size=25))
def test_property_upstream_headers_never_leak_trusted_headers(
    incoming: list[tuple[str, str]],
) -> None:
    headers = upstream(incoming)
    lowered = [name.lower() for name in names(headers)]
    allowed = GATEWAY_SET | {"accept", "accept-language", "content-type"}
    assert set(lowered) <= allowed
    for name in GATEWAY_SET | {"content-type"}:
        assert lowered.count(name) == 1, (name, headers)
    as_dict = dict(headers)
    assert as_dict["x-internal-secret"] == SECRET
    assert as_dict["x-user-id"] == "42"
    assert as_dict["x-request-id"] == "rid-1"
    assert not set(lowered) & (HOP_BY_HOP | {"cookie", "authorization"})


@given(st.lists(st.tuples(header_name, header_value), max_size=25))
def test_property_downstream_headers_stay_in_the_allow_list(
    upstream_headers: list[tuple[str, str]],
) -> None:
    headers = downstream_response_headers(upstream_headers)
    connection_named = connection_tokens(upstream_headers)
    for name, _ in headers:
        assert name in {
            "content-type",
            "cache-control",
            "x-accel-buffering",
            "retry-after",
            "content-language",
        }
        assert name not in connection_named


def test_upstream_forwarded_for_is_the_address_the_gateway_determined() -> None:
    headers = upstream_request_headers(
        [("X-Forwarded-For", "203.0.113.9"), ("Forwarded", "for=203.0.113.9")],
        secret=SECRET,
        user_id=42,
        request_id="rid-1",
        content_type=None,
        client_address="198.51.100.4",
    )
    assert [value for name, value in headers if name == "x-forwarded-for"] == ["198.51.100.4"]
    assert "forwarded" not in names(headers)


def test_upstream_forwarded_for_is_absent_without_a_client_address() -> None:
    headers = upstream([("X-Forwarded-For", "203.0.113.9")])
    assert "x-forwarded-for" not in names(headers)
