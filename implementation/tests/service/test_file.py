"""Chat about a file (SVC-FILE-*): types, size limit, PDF text, what reaches the LLM."""

from __future__ import annotations

import httpx
import pytest
import respx
from fastapi import FastAPI

from fastapi_service.core.files import MAX_FILE_BYTES, safe_name

from .helpers import LLM_URL, SECRET, assert_problem, call_raw, completion, sent_payload


def tiny_pdf(text: str) -> bytes:
    """A minimal one-page PDF showing `text` in Helvetica, with a correct xref table."""
    stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


async def upload(
    client: httpx.AsyncClient, name: str, content: bytes, content_type: str, message: str = "Sum up"
) -> httpx.Response:
    return await client.post(
        "/chatbot/file/",
        files={"file": (name, content, content_type)},
        data={"message": message},
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("notes.txt", "text/plain"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("notes.md", "text/markdown"),
        ("notes.md", "application/octet-stream"),
        ("notes.markdown", "application/octet-stream"),
        ("notes.txt", "application/octet-stream"),
    ],
)
async def test_text_reaches_the_llm_with_the_message(
    client: httpx.AsyncClient, llm: respx.MockRouter, name: str, content_type: str
) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("A summary"))
    response = await upload(client, name, "# Title\nBody ünïcode".encode(), content_type)
    assert response.status_code == 200, response.text
    assert response.json()["reply"] == "A summary"
    [message] = sent_payload(route)["messages"]
    assert message["role"] == "user"
    assert message["content"] == f"File {name}:\n# Title\nBody ünïcode\n\nQuestion: Sum up"


@pytest.mark.asyncio
async def test_pdf_text_is_extracted(client: httpx.AsyncClient, llm: respx.MockRouter) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("ok"))
    response = await upload(client, "doc.pdf", tiny_pdf("Hello PDF world"), "application/pdf")
    assert response.status_code == 200, response.text
    content = sent_payload(route)["messages"][0]["content"]
    assert "Hello PDF world" in content
    assert content.endswith("Question: Sum up")


@pytest.mark.asyncio
async def test_pdf_by_extension(client: httpx.AsyncClient, llm: respx.MockRouter) -> None:
    llm.post(LLM_URL).respond(200, json=completion("ok"))
    response = await upload(client, "doc.pdf", tiny_pdf("Hi"), "application/octet-stream")
    assert response.status_code == 200


@pytest.mark.asyncio
async def test_unreadable_pdf_is_422(client: httpx.AsyncClient, llm: respx.MockRouter) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("never"))
    response = await upload(client, "bad.pdf", b"%PDF-1.4\n garbage \x00\x01", "application/pdf")
    assert_problem(response, 422)
    assert route.call_count == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "content", "content_type"),
    [
        ("pic.png", b"\x89PNG\r\n\x1a\n", "image/png"),
        ("data.json", b"{}", "application/json"),
        ("page.html", b"<p>", "text/html"),
        ("blob.bin", b"\x00\x01", "application/octet-stream"),
        ("latin1.txt", "café".encode("latin-1"), "text/plain"),
        ("fake.pdf", b"not a pdf", "application/pdf"),
        ("nul.txt", b"text\x00with a NUL", "text/plain"),
        ("nul.md", b"# \x00", "text/markdown"),
        ("short.pdf", b"%PD", "application/pdf"),
        ("named.pdf", b"GIF89a", "application/octet-stream"),
    ],
)
async def test_other_types_are_415(
    client: httpx.AsyncClient, llm: respx.MockRouter, name: str, content: bytes, content_type: str
) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("never"))
    assert_problem(await upload(client, name, content, content_type), 415)
    assert route.call_count == 0


@pytest.mark.asyncio
async def test_exactly_10_mib_is_accepted(client: httpx.AsyncClient, llm: respx.MockRouter) -> None:
    llm.post(LLM_URL).respond(200, json=completion("ok"))
    response = await upload(client, "big.txt", b"a" * MAX_FILE_BYTES, "text/plain")
    assert response.status_code == 200


@pytest.mark.asyncio
async def test_one_byte_over_10_mib_is_413(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("never"))
    response = await upload(client, "big.txt", b"a" * (MAX_FILE_BYTES + 1), "text/plain")
    assert_problem(response, 413)
    assert route.call_count == 0


@pytest.mark.asyncio
async def test_much_larger_upload_is_413_while_streaming(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    """No Content-Length (chunked): the limit stops the read, not the end of the body."""
    route = llm.post(LLM_URL).respond(200, json=completion("never"))
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="message"\r\n\r\nhi\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    sent = 0

    async def body() -> object:
        nonlocal sent
        yield head
        for _ in range(64):  # up to 64 MiB, far past the limit
            sent += 1
            yield b"a" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await client.post(
        "/chatbot/file/",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_problem(response, 413)
    assert route.call_count == 0
    assert sent <= 12


@pytest.mark.asyncio
async def test_declared_oversized_body_is_refused_unread(app: FastAPI) -> None:
    headers = [
        (b"x-internal-secret", SECRET.encode()),
        (b"content-type", b"multipart/form-data; boundary=x"),
        (b"content-length", str(50 * 1024 * 1024).encode()),
    ]
    raw = await call_raw(app, "POST", "/chatbot/file/", headers, body=None)
    assert raw.status == 413
    assert raw.header(b"content-type") == b"application/problem+json"


@pytest.mark.asyncio
async def test_message_is_required(client: httpx.AsyncClient, llm: respx.MockRouter) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("never"))
    response = await client.post("/chatbot/file/", files={"file": ("a.txt", b"x", "text/plain")})
    assert_problem(response, 422)
    response = await client.post("/chatbot/file/", data={"message": "hi"})
    assert_problem(response, 422)
    assert route.call_count == 0


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("notes.txt", "notes.txt"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\doc.md", "doc.md"),
        ("evil\nname.txt", "evilname.txt"),
        ("a\r\nb.txt", "ab.txt"),
        ("..\\..\\x.txt", "x.txt"),
        ("..", "upload"),
        ("...", "upload"),
        ("", "upload"),
        (None, "upload"),
    ],
)
def test_safe_name(raw: str | None, shown: str) -> None:
    assert safe_name(raw) == shown
