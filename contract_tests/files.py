"""Upload samples shared by the gateway and service suites."""

from __future__ import annotations

import pytest

#: (filename, bytes, declared content type) whose bytes do not match the type (SEC-6):
#: text or Markdown that is not UTF-8 or holds NUL, a "PDF" without ``%PDF-`` at byte 0,
#: and a generic type whose file name says what the bytes must be.
MISMATCHED_FILES = [
    pytest.param("notes.txt", "café".encode("latin-1"), "text/plain", id="text-latin-1"),
    pytest.param("notes.txt", b"binary\x00nul", "text/plain", id="text-nul"),
    pytest.param("notes.txt", b"\xff\xfe\x00h\x00i", "text/plain", id="text-utf-16"),
    pytest.param("notes.md", b"# title\x00", "text/markdown", id="markdown-nul"),
    pytest.param("notes.md", b"\xc3", "text/markdown", id="markdown-truncated"),
    pytest.param("doc.pdf", b"GIF89a....", "application/pdf", id="pdf-gif"),
    pytest.param("doc.pdf", b"", "application/pdf", id="pdf-empty"),
    pytest.param("doc.pdf", b" %PDF-1.4\n", "application/pdf", id="pdf-offset"),
    pytest.param("doc.pdf", b"<html>", "application/octet-stream", id="pdf-by-name"),
    pytest.param("notes.txt", b"\x00\x01\x02", "application/octet-stream", id="text-by-name"),
]
