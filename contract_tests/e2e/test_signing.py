"""SEC-7 + SEC-8 together: a gateway and a service both in hmac mode work end to end."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.client import logged_in, parse_stream
from harness.fakes import FakeControl
from harness.spec import route
from harness.system import Running, User

CHAT = route("chat")
STREAM = route("chat_stream")
FILE = route("chat_file")


@pytest.mark.req("SEC-7", "SEC-8")
def test_sec_7_sec_8_a_signing_gateway_and_a_verifying_service_chat_end_to_end(
    start_service: Callable[..., Running],
    start_gateway: Callable[..., Running],
    fake_llm: FakeControl,
    alice: User,
    secret: str,
) -> None:
    service = start_service(auth_mode="hmac")
    gateway = start_gateway(service_url=service.url, auth_mode="hmac")
    with logged_in(gateway.url, alice) as client:
        token = fake_llm.behave(reply="signed all the way")
        response = client.post(CHAT.path, json={"message": f"hello {token}"})
        assert response.status_code == 200, response.text
        assert response.json()["reply"] == "signed all the way"

        token = fake_llm.behave(tokens=4)
        response = client.post(STREAM.path, json={"message": f"count {token}"})
        assert response.status_code == 200, response.text
        events, rest = parse_stream(response.content)
        assert [e.event for e in events] == ["token"] * 4 + ["done"]
        assert rest == b""

        # An upload's signature covers the body the gateway rebuilt (SEC-5/6), 2 MiB of it.
        token = fake_llm.behave(reply="signed file")
        notes = (f"notes {token}\n" * (2 * 1024 * 1024 // 40)).encode()
        response = client.post(
            FILE.path,
            data={"message": "sum it up"},
            files={"file": ("../notes.txt", notes, "text/plain")},
        )
        assert response.status_code == 200, response.text
        assert response.json()["reply"] == "signed file"

    for record in fake_llm.requests():
        assert secret not in repr(record), "the secret reached the LLM"
