"""SVC-FILE: chat about an uploaded text, Markdown or PDF file of at most 10 MiB."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from harness.client import assert_problem
from harness.fakes import FakeControl, new_token

from ._helpers import MiB, minimal_pdf

PATH = "/chatbot/file/"
LIMIT = 10 * MiB


def _upload(
    client: httpx.Client, message: str, name: str, content: bytes, content_type: str
) -> httpx.Response:
    return client.post(
        PATH, data={"message": message}, files={"file": (name, content, content_type)}
    )


def _filled(size: int, marker: str) -> bytes:
    """``size`` bytes of plain text that start with ``marker``."""
    head = f"{marker}\n".encode()
    line = b"The quick brown fox jumps over the lazy dog.\n"
    body = head + line * ((size - len(head)) // len(line) + 1)
    return body[:size]


def _files(marker: str) -> dict[str, tuple[str, bytes, str, str]]:
    """name -> (file name, bytes, content type, text the LLM must see)."""
    return {
        "text": (
            "notes.txt",
            f"Ledger: Grüße {marker}, total 42.\n".encode(),
            "text/plain",
            f"Grüße {marker}",
        ),
        "markdown": (
            "notes.md",
            f"# Notes\n\n* the ledger says {marker}\n".encode(),
            "text/markdown",
            f"the ledger says {marker}",
        ),
        "pdf": ("report.pdf", minimal_pdf(f"Report {marker}"), "application/pdf", marker),
    }


@pytest.mark.req("SVC-FILE-1")
@pytest.mark.parametrize("kind", ["text", "markdown", "pdf"])
def test_svc_file_1_file_text_and_message_reach_the_llm(
    service_client: httpx.Client, fake_llm: FakeControl, kind: str
) -> None:
    marker = f"m{secrets.token_hex(6)}"
    name, content, content_type, text = _files(marker)[kind]
    token = fake_llm.behave(reply="It is a ledger.")
    message = f"What does the file say? {token}"
    response = _upload(service_client, message, name, content, content_type)
    assert response.status_code == 200, response.text
    assert response.json()["reply"] == "It is a ledger."
    (record,) = fake_llm.requests(token)
    sent = json.dumps(record["json"]["messages"], ensure_ascii=False)
    assert text in sent, f"the file's text did not reach the LLM: {sent[:2000]}"
    assert message in sent, f"the message did not reach the LLM: {sent[:2000]}"


@pytest.mark.req("SVC-FILE-1")
def test_svc_file_1_file_of_exactly_10_mib_is_accepted(
    service_client: httpx.Client, fake_llm: FakeControl
) -> None:
    token = fake_llm.behave(reply="big file read")
    content = _filled(LIMIT, f"start {token}")
    response = _upload(service_client, f"Summarise {token}", "big.txt", content, "text/plain")
    assert response.status_code == 200, response.text[:500]
    assert response.json()["reply"] == "big file read"


@pytest.mark.req("SVC-FILE-2")
@pytest.mark.parametrize("size", [LIMIT + 1, LIMIT + MiB], ids=["10MiB+1", "11MiB"])
def test_svc_file_2_file_over_10_mib_is_413(
    service_client: httpx.Client, fake_llm: FakeControl, size: int
) -> None:
    token = new_token()
    content = _filled(size, token)
    response = _upload(service_client, f"Summarise {token}", "big.txt", content, "text/plain")
    assert_problem(response, 413)
    assert fake_llm.requests(token) == []


@pytest.mark.req("SVC-FILE-3")
@pytest.mark.parametrize(
    ("name", "content", "content_type"),
    [
        ("picture.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "image/png"),
        ("archive.zip", b"PK\x03\x04\x14\x00" + bytes(64), "application/zip"),
        ("page.html", b"<!doctype html><title>x</title><p>hello</p>", "text/html"),
    ],
    ids=["png", "zip", "html"],
)
def test_svc_file_3_other_file_type_is_415(
    service_client: httpx.Client,
    fake_llm: FakeControl,
    name: str,
    content: bytes,
    content_type: str,
) -> None:
    token = new_token()
    response = _upload(service_client, f"Describe {token}", name, content, content_type)
    assert_problem(response, 415)
    assert fake_llm.requests(token) == []
