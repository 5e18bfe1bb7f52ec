"""SEC-6 at the service: a file whose bytes do not match its declared type never reaches the LLM."""

from __future__ import annotations

import httpx
import pytest

from contract_tests.files import MISMATCHED_FILES
from contract_tests.service._helpers import ROUTES, minimal_pdf
from harness.client import assert_no_leak, assert_problem
from harness.fakes import FakeControl


def upload(
    client: httpx.Client, message: str, name: str, content: bytes, content_type: str
) -> httpx.Response:
    return client.post(
        ROUTES["file"],
        data={"message": message},
        files={"file": (name, content, content_type)},
        timeout=30.0,
    )


@pytest.mark.req("SEC-6")
@pytest.mark.parametrize(("name", "content", "content_type"), MISMATCHED_FILES)
def test_sec_6_bytes_that_do_not_match_the_declared_type_get_415_before_the_llm(
    service_client: httpx.Client,
    fake_llm: FakeControl,
    hidden: tuple[str, str],
    name: str,
    content: bytes,
    content_type: str,
) -> None:
    token = fake_llm.behave(reply="must not be asked")
    response = upload(service_client, f"What is this? {token}", name, content, content_type)
    assert_problem(response, 415)
    assert_no_leak(response, *hidden)
    assert fake_llm.requests(token) == [], "the LLM was called for a refused file"


@pytest.mark.req("SEC-6")
def test_sec_6_a_nul_byte_deep_in_a_large_text_is_refused(
    service_client: httpx.Client, fake_llm: FakeControl
) -> None:
    token = fake_llm.behave(reply="must not be asked")
    content = b"fine text\n" * (512 * 1024) + b"\x00"
    response = upload(service_client, f"What is this? {token}", "notes.txt", content, "text/plain")
    assert_problem(response, 415)
    assert fake_llm.requests(token) == []


@pytest.mark.req("SEC-6")
@pytest.mark.parametrize(
    ("name", "content", "content_type"),
    [
        pytest.param("notes.txt", "naïve ✓ notes\n".encode(), "text/plain", id="text"),
        pytest.param("notes.md", b"\xef\xbb\xbf# BOM first\n", "text/markdown", id="markdown"),
        pytest.param("doc.pdf", minimal_pdf("Hello"), "application/pdf", id="pdf"),
        pytest.param("doc.pdf", minimal_pdf("Hello"), "application/octet-stream", id="by-name"),
    ],
)
def test_sec_6_bytes_that_match_the_declared_type_reach_the_llm(
    service_client: httpx.Client,
    fake_llm: FakeControl,
    name: str,
    content: bytes,
    content_type: str,
) -> None:
    token = fake_llm.behave(reply="read it")
    response = upload(service_client, f"What is this? {token}", name, content, content_type)
    assert response.status_code == 200, response.text
    assert response.json()["reply"] == "read it"
    assert len(fake_llm.requests(token)) == 1
