"""SEC-2: no log of any component holds the shared secret or the LLM API key.

This module runs after every other test of the session (``RUN_LAST``, see the
collection hook in contract_tests/conftest.py), so the logs it searches are
those of the whole run: every process the harness started writes its output,
failures included, to a file under the run's log directory. Before searching,
it provokes the paths most likely to log a secret itself, so it means something
even when run alone: a gateway whose secret its service refuses (in debug
mode), wrong and missing secrets, validation errors, LLM failures, and the
whole chain.

A hit is reported as file:line with the value replaced by a marker: the
secret is never printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from harness.client import http_client, logged_in
from harness.fakes import FakeControl
from harness.processes import ManagedProcess
from harness.spec import proxied_routes, route
from harness.system import Fake, Harness, Running, User

#: Collected after every other test (contract_tests/conftest.py).
RUN_LAST = True

SECRET_HEADER = "X-Internal-Secret"
WRONG_SECRET = "sec2-not-the-secret-0d6f"
CHAT = route("chat")
STREAM = route("chat_stream")
UPLOAD = route("chat_file")


@pytest.fixture
def started(harness: Harness) -> Iterator[list[ManagedProcess]]:
    """Processes this module starts; it stops them itself (so their last words are logged)."""
    processes: list[ManagedProcess] = []
    yield processes
    for process in processes:
        process.stop()


def wait_for_line(log: Path, predicate: Callable[[str], bool], timeout: float = 5.0) -> None:
    """Poll ``log`` until one of its lines satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        if any(predicate(line) for line in text.splitlines()):
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"no matching line in {log.name} within {timeout}s")
        time.sleep(0.05)  # poll interval, not synchronisation


def exercise_gateway(client: httpx.Client) -> list[int]:
    """Every proxied route, plus requests the gateway refuses itself; the statuses."""
    responses = [
        *(each.call(client, "hello") for each in proxied_routes()),
        client.post(CHAT.path, content=b"{not json", headers={"Content-Type": "application/json"}),
        client.post(CHAT.path, json={"message": "x"}, headers={SECRET_HEADER: WRONG_SECRET}),
        client.post(UPLOAD.path, data={"message": "x"}, files={"file": ("a.pdf", b"no")}),
        client.get("/api/no-such-route/"),
    ]
    return [response.status_code for response in responses]


def exercise_service(url: str, secret: str, llm: FakeControl) -> None:
    """Requests the service refuses or fails on: wrong or no secret, bad bodies, LLM failures."""
    with http_client(url) as anon:
        anon.post("/chatbot/", json={"message": "no secret"})
        anon.post("/chatbot/", json={"message": "wrong"}, headers={SECRET_HEADER: WRONG_SECRET})
    with http_client(url, headers={SECRET_HEADER: secret}) as client:
        client.post("/chatbot/", content=b"{", headers={"Content-Type": "application/json"})
        client.post("/chatbot/", json={"history": "not a list"})
        client.post("/quiz/", json={"topic": "t", "num_questions": 99})
        client.post("/chatbot/file/", data={"message": "x"}, files={"file": ("a.exe", b"MZ")})
        client.get("/no-such-route")
        for behaviour in ({"status": 500}, {"status": 401}, {"status": 429}, {"malformed": True}):
            token = llm.behave(**behaviour, times=2)
            client.post("/chatbot/", json={"message": f"fail {token}"})
            client.post("/chatbot/stream/", json={"message": f"fail {token}"})
        token = llm.behave(fail_after=2, times=1)
        client.post("/chatbot/stream/", json={"message": f"cut {token}"})


@pytest.mark.req("SEC-2")
def test_sec_2_no_log_of_the_run_holds_the_secret_or_the_llm_api_key(
    harness: Harness,
    secret: str,
    users: list[User],
    alice: User,
    fake_llm: FakeControl,
    fake_llm_server: Fake,
    e2e_gateway: Running,
    started: list[ManagedProcess],
) -> None:
    llm_url = fake_llm_server.url + "/v1"

    # A service in debug mode holding another secret than its gateway: the service
    # refuses the gateway's secret, the gateway logs that the secrets do not match.
    debug_service = harness.start_service(llm_url, secret=WRONG_SECRET, debug="1")
    started.append(debug_service.process)
    mismatched = harness.start_gateway(debug_service.url, users)
    started.append(mismatched.process)
    with logged_in(mismatched.url, alice) as client:
        assert 502 in exercise_gateway(client)
    wait_for_line(mismatched.log, lambda line: "secret" in line.lower())
    exercise_service(debug_service.url, WRONG_SECRET, fake_llm)
    exercise_service(debug_service.url, secret, fake_llm)

    # The whole chain, happy and failing.
    with logged_in(e2e_gateway.url, alice) as client:
        exercise_gateway(client)
        token = fake_llm.behave(status=500, times=4)
        CHAT.call(client, f"fail {token}")
        STREAM.call(client, f"fail {token}")

    for process in started:  # their shutdown output is part of the run too
        process.stop()

    hits = scan(
        harness.run_dir, {"the shared secret": secret, "the LLM API key": harness.llm_api_key}
    )
    assert not hits, "secrets in the logs of this run:\n" + "\n".join(hits)


def scan(root: Path, needles: dict[str, str]) -> list[str]:
    """``file:line: what`` for every line of every file under ``root`` holding a needle.

    The line is shown with each needle replaced by a marker, never with the value.
    """
    hits: list[str] = []
    wanted = {label: value.encode() for label, value in needles.items() if value}
    files = sorted(path for path in root.rglob("*") if path.is_file())
    assert files, f"no logs under {root}"
    for path in files:
        data = path.read_bytes()
        if not any(value in data for value in wanted.values()):
            continue
        for number, line in enumerate(data.splitlines(), 1):
            found = [label for label, value in wanted.items() if value in line]
            if not found:
                continue
            for label, value in wanted.items():
                line = line.replace(value, f"<{label}>".encode())
            shown = line.decode("utf-8", errors="replace")[:300]
            hits.append(f"{path.relative_to(root)}:{number}: {', '.join(found)}: {shown}")
    return hits
