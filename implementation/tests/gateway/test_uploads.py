"""gateway/proxy/uploads.py: filenames neutralised (SEC-5), file bytes sniffed (SEC-6)."""

from __future__ import annotations

import io
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from python_multipart.multipart import parse_options_header

from gateway.problems import ProblemError
from gateway.proxy.uploads import UNSAFE_CATEGORIES, UploadRewriter, safe_filename

BOUNDARY = "b0undary-xyz"


def multipart(
    content: bytes, *, filename: str = "a.txt", content_type: str = "text/plain"
) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="message"\r\n\r\n'
        "what is this?\r\n"
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    )
    return head.encode() + content + f"\r\n--{BOUNDARY}--\r\n".encode()


def rewrite(body: bytes, *, chunk: int = 7, max_part: int = 1000) -> bytes:
    out = io.BytesIO()
    rewriter = UploadRewriter(BOUNDARY, out, max_part=max_part, too_large=lambda: "too large")
    for start in range(0, len(body), chunk):
        rewriter.write(body[start : start + chunk])
    rewriter.close()
    assert rewriter.size == len(out.getvalue())
    return out.getvalue()


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("notes.txt", "notes.txt"),
        ("../../etc/passwd", "passwd"),
        ("a\r\nb.txt", "ab.txt"),
        ("..\\..\\x.txt", "x.txt"),
        ("C:\\Users\\me\\doc.md", "doc.md"),
        (".\x00./..\x7f/secret.pdf", "secret.pdf"),
        ("", "upload"),
        ("...", "upload"),
        ("..", "upload"),
        ("dir/", "dir"),
        (" \t", "upload"),
        ("a\u2028b.txt", "ab.txt"),
        (".bashrc", ".bashrc"),
        ("ünïcödé.md", "ünïcödé.md"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_safe_filename(raw: str, safe: str) -> None:
    assert safe_filename(raw) == safe


@given(st.text(max_size=300))
def test_safe_filename_is_one_plain_segment(raw: str) -> None:
    name = safe_filename(raw)
    assert name
    assert len(name) <= 200
    assert "/" not in name
    assert "\\" not in name
    assert name.strip(".")
    assert not [ch for ch in name if unicodedata.category(ch) in UNSAFE_CATEGORIES], name


def test_a_clean_upload_is_written_back_unchanged() -> None:
    body = multipart("héllo\r\n--b0undary-xy\r\n".encode())
    assert rewrite(body) == body


@pytest.mark.parametrize(
    ("raw", "safe"), [("../../etc/passwd", "passwd"), ("..\\..\\x.txt", "x.txt"), ("", "upload")]
)
def test_the_filename_is_rewritten(raw: str, safe: str) -> None:
    body = multipart(b"hello", filename=raw)
    out = rewrite(body)
    assert out == body.replace(f'filename="{raw}"'.encode(), f'filename="{safe}"'.encode())


def test_a_filename_with_a_quote_stays_one_parameter() -> None:
    raw = multipart(b"x").replace(b'filename="a.txt"', b'filename="a\\"; name=\\"evil.txt"')
    out = rewrite(raw)
    disposition = next(line for line in out.split(b"\r\n") if b"filename" in line)
    _, options = parse_options_header(disposition.split(b":", 1)[1].strip())
    assert options[b"name"] == b"file"
    assert options[b"filename"] == b"a%22; name=%22evil.txt"


@pytest.mark.parametrize(
    ("content", "filename", "content_type"),
    [
        (b"caf\xe9", "a.txt", "text/plain"),
        (b"nul\x00byte", "a.md", "text/markdown"),
        (b"\xe2\x82", "a.txt", "text/plain"),  # cut in the middle of a character
        (b"GIF89a", "a.pdf", "application/pdf"),
        (b"%PD", "a.pdf", "application/pdf"),
        (b"\x00\x01", "a.txt", "application/octet-stream"),
        (b"<html>", "a.PDF", ""),
    ],
)
def test_bytes_that_do_not_match_the_declared_type_are_415(
    content: bytes, filename: str, content_type: str
) -> None:
    with pytest.raises(ProblemError) as raised:
        rewrite(multipart(content, filename=filename, content_type=content_type), chunk=1)
    assert raised.value.status == 415


@pytest.mark.parametrize(
    ("content", "filename", "content_type"),
    [
        ("naïve ✓\n".encode(), "a.txt", "text/plain; charset=utf-8"),
        (b"\xef\xbb\xbfbom", "a.md", "text/markdown"),
        (b"%PDF-1.7\n\x00\xff", "a.pdf", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n\x00", "a.png", "image/png"),  # the service decides
    ],
)
def test_bytes_that_match_go_through(content: bytes, filename: str, content_type: str) -> None:
    body = multipart(content, filename=filename, content_type=content_type)
    assert rewrite(body, chunk=1) == body


def test_a_part_over_the_limit_is_413() -> None:
    with pytest.raises(ProblemError) as raised:
        rewrite(multipart(b"x" * 1001))
    assert raised.value.status == 413


def test_a_body_without_its_closing_boundary_is_400() -> None:
    body = multipart(b"hello")
    with pytest.raises(ProblemError) as raised:
        rewrite(body[: body.rindex(b"--")])
    assert raised.value.status == 400
