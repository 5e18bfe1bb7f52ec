"""OPS-METRICS-1..4 at the gateway: its metrics, counted after a known load.

One gateway of this module's own (a pool of 2 connections, a 1 s pool timeout, 2
streams per user, 3 quizzes a minute) takes one scripted load, and each counter must
have moved by exactly what was sent: 100 chats, 20 streams of which 5 left by their
client, 10 chats refused by the full pool, 3 streams over the cap, 2 quizzes over the
rate, and service failures of each kind. Nothing else talks to this gateway, so the
differences between two scrapes are the load's alone.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from contract_tests.gateway.conftest import RawRequest
from contract_tests.metrics import Scrape, moved, scrape, wait_until
from harness.client import Session, assert_problem, parse_stream
from harness.fakes import FakeControl
from harness.processes import LOOPBACK, free_port
from harness.requirements import METRIC_METHODS, metric_table
from harness.spec import gateway_spec, route
from harness.system import Harness, Running, User

CHAT = route("chat")
STREAM = route("chat_stream")
QUIZ = route("quiz_generate")

CHATS = 100
STREAMS = 20
ABORTED = 5
POOL_REFUSED = 10
OVER_CAP = 3
QUIZ_RATE = 3
OVER_RATE = 2
#: Service failures and the gateway status each gives (GW-PROXY-7).
BAD_ANSWERS = 2  # the service answers 500: 502
BROKEN = 2  # the service closes the connection before answering: 502
TIMEOUTS = 1  # the service never answers within the read timeout: 504


@dataclass
class Scene:
    """The scrapes around the load, and what the client saw."""

    before: Scrape
    after: Scrape
    #: The scrape while two streams were held open, and the one after they ended.
    while_held: Scrape
    after_held: Scrape
    chat_bytes: int
    opened_during_chats: float
    statuses: dict[str, list[int]] = field(default_factory=dict)

    def moved(self, name: str, **labels: str) -> float:
        return moved(self.before, self.after, name, **labels)


@pytest.fixture(scope="module")
def counted_gateway(
    harness: Harness, fake_service_server: object, users: list[User]
) -> Iterator[Running]:
    running = harness.start_gateway(
        fake_service_server.url,  # type: ignore[attr-defined]
        users,
        max_connections="2",
        pool_timeout="1",
        read_timeout="5",  # outlasts the held streams; a hanging service costs this
        max_streams_per_user="2",
        quiz_rate=f"{QUIZ_RATE}/m",
    )
    try:
        yield running
    finally:
        running.process.stop()


@pytest.fixture(scope="module")
def scene(counted_gateway: Running, fake_service_server: object, alice: User, bob: User) -> Scene:
    fake: FakeControl = fake_service_server.control  # type: ignore[attr-defined]
    gateway = counted_gateway
    alice_session, bob_session = Session.of(gateway.url, alice), Session.of(gateway.url, bob)
    statuses: dict[str, list[int]] = {}
    with alice_session.client() as alice_client, bob_session.client() as bob_client:
        before = wait_until(gateway, _upstream_settled)

        # 100 chats, one after the other: the pool reuses its connection.
        chat_bytes = 0
        for _ in range(CHATS):
            response = CHAT.call(alice_client, fake.behave())
            assert response.status_code == 200, response.text
            chat_bytes += len(response.content)
        after_chats = wait_until(gateway, lambda s: _sent(s) - _sent(before) >= CHATS)
        opened_during_chats = moved(
            before, after_chats, "gateway_upstream_connections_opened_total"
        )

        # 20 streams; the client leaves 5 of them after their first event.
        for _ in range(STREAMS - ABORTED):
            response = STREAM.call(alice_client, fake.behave(events=3))
            assert response.status_code == 200, response.text
            assert parse_stream(response.content)[0][-1].event == "done", response.text
        payload = json.dumps({"message": f"leave {fake.behave(events=3, hold_after=1)}"})
        for n in range(ABORTED):
            with RawRequest.to_gateway(alice_session, STREAM.path, payload.encode()) as browser:
                assert browser.read_events(1)[0].event == "token"
                browser.abort()
            # The gateway has seen the client leave (and freed its slot) before the next.
            wait_until(
                gateway,
                lambda s, left=n + 1: _stream_ends(s, before, "client_left") >= left,
            )

        # Two streams held open fill the pool (and alice's stream cap).
        holder = fake.behave(events=2, hold_after=1)
        held = [
            alice_client.send(STREAM.build(alice_client, f"{holder} {n}"), stream=True)
            for n in range(2)
        ]
        try:
            assert [r.status_code for r in held] == [200, 200]
            fake.wait_for(lambda records: len(records) == 2, match=holder)
            while_held = wait_until(gateway, _held_settled)
            statuses["over_cap"] = [
                STREAM.call(alice_client, fake.behave()).status_code for _ in range(OVER_CAP)
            ]
            with ThreadPoolExecutor(POOL_REFUSED) as pool:
                statuses["pool_refused"] = list(
                    pool.map(lambda n: _chat_as(bob_session, f"refused {n}"), range(POOL_REFUSED))
                )
            fake.release(holder, count=2)
            for response in held:
                events, _ = parse_stream(response.read())
                assert events[-1].event == "done", events
        finally:
            for response in held:
                response.close()
        after_held = wait_until(gateway, _released_settled)

        # Quizzes past the rate, then the service's failures of each kind.
        statuses["quiz"] = [
            QUIZ.call(bob_client, fake.behave()).status_code for _ in range(QUIZ_RATE + OVER_RATE)
        ]
        failing = [
            *[fake.behave(status=500) for _ in range(BAD_ANSWERS)],
            *[fake.behave(close=True) for _ in range(BROKEN)],
            *[fake.behave(hang=True) for _ in range(TIMEOUTS)],
        ]
        statuses["failures"] = [CHAT.call(bob_client, token).status_code for token in failing]
        after = wait_until(
            gateway, lambda s: _upstream_settled(s) and _sent(s) >= _sent(before) + _expected_sent()
        )
    return Scene(before, after, while_held, after_held, chat_bytes, opened_during_chats, statuses)


def _chat_as(session: Session, text: str) -> int:
    with session.client() as client:
        return CHAT.call(client, text).status_code


def _sent(s: Scrape) -> float:
    return s.value("gateway_upstream_requests_total")


def _expected_sent() -> int:
    """Every request that reached the service: none of the refused ones."""
    return CHATS + STREAMS + 2 + QUIZ_RATE + BAD_ANSWERS + BROKEN + TIMEOUTS


def _stream_ends(s: Scrape, before: Scrape, end: str) -> float:
    return moved(before, s, "gateway_streams_total", end=end)


def _upstream_settled(s: Scrape) -> bool:
    return s.value("gateway_upstream_connections", state="in_use") == 0 and (
        s.value("gateway_streams_open") == 0
    )


def _held_settled(s: Scrape) -> bool:
    return s.value("gateway_streams_open") == 2 and (
        s.value("gateway_upstream_connections", state="in_use") >= 2
    )


def _released_settled(s: Scrape) -> bool:
    return _upstream_settled(s) and s.value("gateway_requests_in_flight") == 0


# -- OPS-METRICS-1 ---------------------------------------------------------------------------
@pytest.mark.req("OPS-METRICS-1")
def test_ops_metrics_1_every_gateway_metric_of_the_spec_is_served_with_its_type(
    scene: Scene,
) -> None:
    table = [m for m in metric_table() if m.name.startswith("gateway_")]
    assert table, "the spec's metrics table names no gateway metric"
    missing, wrong = [], []
    for metric in table:
        family = metric.family
        if family not in scene.after.types:
            missing.append(metric.name)
        elif scene.after.types[family] != metric.type:
            wrong.append(f"{metric.name}: {scene.after.types[family]}, not {metric.type}")
        names = metric.sample_names()
        for sample in (s for s in scene.after.samples if s.name in names):
            extra = set(sample.labels) - set(metric.labels) - {"le", "pid"}
            absent = set(metric.labels) - set(sample.labels)
            if extra or absent:
                wrong.append(f"{sample.name}{sample.labels}: labels {sorted(sample.labels)}")
            for label, listed in metric.values.items():
                if sample.labels.get(label, "") not in listed:
                    wrong.append(f"{sample.name}{sample.labels}: {label} not in {sorted(listed)}")
    assert not missing, f"metrics the spec names are not served: {missing}"
    assert not wrong, "\n".join(wrong)


@pytest.mark.req("OPS-METRICS-1")
def test_ops_metrics_1_the_browser_facing_port_does_not_serve_them(
    counted_gateway: Running,
) -> None:
    with httpx.Client(base_url=counted_gateway.url, trust_env=False) as client:
        response = client.get("/metrics")
    assert_problem(response, 404)
    assert "gateway_requests_total" not in response.text


# -- OPS-METRICS-2 ---------------------------------------------------------------------------
@pytest.mark.req("OPS-METRICS-2")
def test_ops_metrics_2_requests_are_counted_by_route_method_and_status(scene: Scene) -> None:
    assert scene.statuses["over_cap"] == [429] * OVER_CAP
    assert scene.statuses["pool_refused"] == [503] * POOL_REFUSED
    assert scene.statuses["quiz"] == [200] * QUIZ_RATE + [429] * OVER_RATE
    assert scene.statuses["failures"] == [502] * (BAD_ANSWERS + BROKEN) + [504] * TIMEOUTS
    chat, stream, quiz = CHAT.path, STREAM.path, QUIZ.path
    expected = {
        (chat, "200"): CHATS,
        (chat, "503"): POOL_REFUSED,
        (chat, "502"): BAD_ANSWERS + BROKEN,
        (chat, "504"): TIMEOUTS,
        (stream, "200"): STREAMS + 2,
        (stream, "429"): OVER_CAP,
        (quiz, "200"): QUIZ_RATE,
        (quiz, "429"): OVER_RATE,
    }
    counted = {
        key: scene.moved("gateway_requests_total", route=key[0], method="POST", status=key[1])
        for key in expected
    }
    assert counted == expected
    total = sum(expected.values())
    proxied = sum(scene.moved("gateway_requests_total", route=r) for r in (chat, stream, quiz))
    assert proxied == total, "requests counted that were never sent"
    durations = {
        r: scene.moved("gateway_request_duration_seconds_count", route=r)
        for r in (chat, stream, quiz)
    }
    assert durations == {
        chat: CHATS + POOL_REFUSED + BAD_ANSWERS + BROKEN + TIMEOUTS,
        stream: STREAMS + 2 + OVER_CAP,
        quiz: QUIZ_RATE + OVER_RATE,
    }


@pytest.mark.req("OPS-METRICS-2")
def test_ops_metrics_2_streams_are_counted_by_how_they_ended(scene: Scene) -> None:
    ends = {
        end: scene.moved("gateway_streams_total", route=STREAM.path, end=end)
        for end in ("done", "error", "client_left", "drained")
    }
    assert ends == {"done": STREAMS - ABORTED + 2, "error": 0, "client_left": ABORTED, "drained": 0}
    assert scene.moved("gateway_client_aborts_total", route=STREAM.path) == ABORTED
    assert scene.moved("gateway_client_aborts_total") == ABORTED
    assert scene.moved("gateway_stream_ttfb_seconds_count", route=STREAM.path) == STREAMS + 2


@pytest.mark.req("OPS-METRICS-2")
def test_ops_metrics_2_bytes_are_the_body_bytes_the_client_received(scene: Scene) -> None:
    assert scene.moved("gateway_response_bytes_total", route=CHAT.path) >= scene.chat_bytes
    # Only the failures and refusals add to the chats' bytes: their problem bodies.
    refused = scene.moved("gateway_response_bytes_total", route=CHAT.path) - scene.chat_bytes
    assert 0 < refused < 2000 * (POOL_REFUSED + BAD_ANSWERS + BROKEN + TIMEOUTS)


@pytest.mark.req("OPS-METRICS-2")
def test_ops_metrics_2_upstream_requests_refusals_and_failures_are_counted_by_kind(
    scene: Scene,
) -> None:
    assert scene.moved("gateway_upstream_requests_total") == _expected_sent()
    assert scene.moved("gateway_pool_exhausted_total") == POOL_REFUSED
    kinds = {
        kind: scene.moved("gateway_upstream_failures_total", kind=kind)
        for kind in ("refused", "timeout", "broken", "bad_answer")
    }
    assert kinds == {"refused": 0, "timeout": TIMEOUTS, "broken": BROKEN, "bad_answer": BAD_ANSWERS}
    buckets = {
        bucket: scene.moved("gateway_rate_limited_total", bucket=bucket)
        for bucket in ("chat", "quiz", "streams")
    }
    assert buckets == {"chat": 0, "quiz": OVER_RATE, "streams": OVER_CAP}


@pytest.mark.req("OPS-METRICS-2")
def test_ops_metrics_2_connections_opened_count_new_connections_not_reused_ones(
    scene: Scene,
) -> None:
    # A hundred chats one after the other reuse one pooled connection (GW-PROXY-1).
    assert 0 <= scene.opened_during_chats <= 2
    # Each stream a client left closed its connection: the next request opened one.
    opened = scene.moved("gateway_upstream_connections_opened_total")
    assert ABORTED <= opened <= scene.moved("gateway_upstream_requests_total")


@pytest.mark.req("OPS-METRICS-2")
def test_ops_metrics_2_a_service_that_refuses_connections_is_counted_as_refused(
    start_gateway: Callable[..., Running], alice: User
) -> None:
    # A port nobody listens on: each connect is refused at once.
    running = start_gateway(service_url=f"http://{LOOPBACK}:{free_port()}")
    before = scrape(running)
    with Session.of(running.url, alice).client() as client:
        statuses = [CHAT.call(client, f"nobody {n}").status_code for n in range(2)]
    after = wait_until(running, lambda s: _sent(s) - _sent(before) >= 2)
    assert statuses == [502, 502]
    assert moved(before, after, "gateway_upstream_failures_total", kind="refused") == 2


# -- OPS-METRICS-3 ---------------------------------------------------------------------------
@pytest.mark.req("OPS-METRICS-3")
def test_ops_metrics_3_labels_stay_templates_whatever_the_client_sends(
    counted_gateway: Running, scene: Scene
) -> None:
    token = secrets.token_hex(6)
    with httpx.Client(base_url=counted_gateway.url, trust_env=False) as client:
        for path in (f"/api/chat/{token}/", f"/{token}", f"/api/auth/{token}/", "/api/chat"):
            client.get(path)
        client.request("PROPFIND", "/api/chat/")  # a method HTTP servers know, the spec not
    after = scrape(counted_gateway)
    leaked = [s for s in after.samples if any(token in v for v in s.labels.values())]
    assert not leaked, f"a raw path became a label: {leaked[:3]}"
    templates = set(gateway_spec().document["paths"]) | {"unmatched"}
    assert after.label_values("route") <= templates, after.label_values("route") - templates
    methods = after.label_values("method")
    assert methods <= METRIC_METHODS, methods - METRIC_METHODS
    assert after.value("gateway_requests_total", route="unmatched") >= 3
    assert after.value("gateway_requests_total", method="other") >= 1
    for value in after.label_values("status"):
        assert re.fullmatch(r"[1-5]\d\d", value), value


# -- OPS-METRICS-4 ---------------------------------------------------------------------------
@pytest.mark.req("OPS-METRICS-4")
def test_ops_metrics_4_gauges_follow_the_streams_held_open(scene: Scene) -> None:
    held = scene.while_held
    assert held.value("gateway_streams_open") == 2
    assert held.value("gateway_upstream_connections", state="in_use") >= 2
    assert held.value("gateway_requests_in_flight") >= 2
    after = scene.after_held
    assert after.value("gateway_streams_open") == 0
    assert after.value("gateway_upstream_connections", state="in_use") == 0
    assert after.value("gateway_requests_in_flight") == 0
