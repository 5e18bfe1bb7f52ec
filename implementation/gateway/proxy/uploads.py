"""Check a multipart upload part by part and write it out again, made safe.

The gateway parses the upload with python-multipart (as the service does) and
writes each part back under the same boundary, byte for byte, except:

- a file part's ``Content-Disposition`` is rebuilt with a neutral filename:
  no directory parts, no control characters, never empty (SEC-5), so the
  service never sees ``../../etc/passwd``;
- a file declared as text or Markdown must be UTF-8 without NUL bytes, one
  declared as a PDF must start with ``%PDF-`` (SEC-6): otherwise 415, before
  a byte reaches the service. Files of other types go on to the service,
  which decides (SVC-FILE-3).

Every part is also measured against the upload limit (413). The checks
stream: no part is ever held whole.
"""

from __future__ import annotations

import codecs
import unicodedata
from collections.abc import Callable
from pathlib import PurePosixPath, PureWindowsPath
from typing import Protocol

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.problems import ProblemError

MAX_NAME = 200
# Unicode's control, format, surrogate, private-use and unassigned characters,
# and the line and paragraph separators: none belongs in a file name.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
FALLBACK_NAME = "upload"
TEXT_TYPES = frozenset({b"text/plain", b"text/markdown", b"text/x-markdown"})
PDF_TYPE = b"application/pdf"
GENERIC_TYPES = frozenset({b"", b"application/octet-stream"})
TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
PDF_MAGIC = b"%PDF-"
CONTENT_DISPOSITION = b"content-disposition"
CONTENT_TYPE = b"content-type"


def safe_filename(filename: str) -> str:
    """The last path segment of ``filename`` without control characters; never empty.

    Control characters (and Unicode's line and paragraph separators) go first,
    so ``a\\r\\nb.txt`` is ``ab.txt`` and none can hide a separator; then every
    directory part, POSIX or Windows; a name of dots only (``..``) is a
    directory reference, not a name.
    """
    name = "".join(ch for ch in filename if unicodedata.category(ch) not in UNSAFE_CATEGORIES)
    name = PureWindowsPath(PurePosixPath(name).name).name.strip()
    if not name.strip("."):
        return FALLBACK_NAME
    if len(name) > MAX_NAME:
        suffix = PurePosixPath(name).suffix
        suffix = suffix if len(suffix) <= 16 else ""
        name = name[: MAX_NAME - len(suffix)] + suffix
    return name


def file_kind(content_type: bytes, filename: str) -> str | None:
    """'text' or 'pdf' from the declared type (or the name, when the type is generic)."""
    declared = content_type.split(b";", 1)[0].strip().lower()
    if declared in TEXT_TYPES:
        return "text"
    if declared == PDF_TYPE:
        return "pdf"
    if declared in GENERIC_TYPES:
        suffix = PurePosixPath(filename).suffix.lower()
        if suffix in TEXT_SUFFIXES:
            return "text"
        if suffix == ".pdf":
            return "pdf"
    return None


class _Sniffer:
    """Checks a file's bytes, as they arrive, against its declared kind (SEC-6)."""

    def __init__(self, kind: str | None) -> None:
        self.kind = kind
        self._head = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")

    def feed(self, data: bytes) -> None:
        if self.kind == "text":
            if b"\x00" in data:
                raise ProblemError(415, "A text or Markdown file must not contain NUL bytes.")
            try:
                self._decoder.decode(data)
            except UnicodeDecodeError:
                raise ProblemError(415, "A text or Markdown file must be UTF-8.") from None
        elif self.kind == "pdf" and len(self._head) < len(PDF_MAGIC):
            self._head += data[: len(PDF_MAGIC) - len(self._head)]
            self._check_pdf_head()

    def finish(self) -> None:
        if self.kind == "text":
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise ProblemError(415, "A text or Markdown file must be UTF-8.") from None
        elif self.kind == "pdf":
            self._check_pdf_head()
            if len(self._head) < len(PDF_MAGIC):
                raise ProblemError(415, "The file is declared as a PDF but is not one.")

    def _check_pdf_head(self) -> None:
        if not PDF_MAGIC.startswith(self._head):
            raise ProblemError(415, "The file is declared as a PDF but is not one.")


class Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


class UploadRewriter:
    """Feed it the raw multipart body; it writes the checked, rebuilt body to ``out``."""

    def __init__(
        self, boundary: str, out: Writer, *, max_part: int, too_large: Callable[[], str]
    ) -> None:
        self._out = out
        self._max_part = max_part
        self._too_large = too_large
        self.size = 0  # bytes written to ``out``
        self.ended = False
        try:
            self._boundary = boundary.encode("latin-1")
            self._parser = MultipartParser(
                self._boundary,
                callbacks={
                    "on_part_begin": self._part_begin,
                    "on_header_field": self._header_field,
                    "on_header_value": self._header_value,
                    "on_header_end": self._header_end,
                    "on_headers_finished": self._headers_finished,
                    "on_part_data": self._part_data,
                    "on_part_end": self._part_end,
                    "on_end": self._end,
                },
            )
        except (FormParserError, UnicodeError):
            raise ProblemError(400, "The multipart boundary is not valid.") from None
        self._field = bytearray()
        self._value = bytearray()
        self._headers: list[tuple[bytes, bytes]] = []
        self._part = 0
        self._sniffer = _Sniffer(None)

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except (FormParserError, UnicodeError):
            raise ProblemError(400, "The upload is not a valid multipart body.") from None

    def close(self) -> None:
        """The body is complete: it must have ended with the closing boundary."""
        if not self.ended:
            raise ProblemError(400, "The upload is not a valid multipart body.")

    def _emit(self, data: bytes) -> None:
        self._out.write(data)
        self.size += len(data)

    # -- python-multipart callbacks ------------------------------------------------------------
    def _part_begin(self) -> None:
        self._headers = []
        self._part = 0
        self._sniffer = _Sniffer(None)

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers.append((bytes(self._field), bytes(self._value)))
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        headers = dict((name.strip().lower(), value.strip()) for name, value in self._headers)
        disposition, options = parse_options_header(headers.get(CONTENT_DISPOSITION, b""))
        out = [b"--" + self._boundary]
        for name, value in self._headers:
            if name.strip().lower() == CONTENT_DISPOSITION and b"filename" in options:
                filename = safe_filename(options[b"filename"].decode("utf-8", errors="replace"))
                kind = file_kind(headers.get(CONTENT_TYPE, b""), filename)
                self._sniffer = _Sniffer(kind)
                value = _disposition(disposition, options.get(b"name", b""), filename)
            out.append(name + b": " + value)
        self._emit(b"\r\n".join(out) + b"\r\n\r\n")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        piece = data[start:end]
        self._part += len(piece)
        if self._part > self._max_part:
            raise ProblemError(413, self._too_large())
        self._sniffer.feed(piece)
        self._emit(piece)

    def _part_end(self) -> None:
        self._sniffer.finish()
        self._emit(b"\r\n")

    def _end(self) -> None:
        self.ended = True
        self._emit(b"--" + self._boundary + b"--\r\n")


def _disposition(disposition: bytes, name: bytes, filename: str) -> bytes:
    """A ``form-data`` disposition with just a quoted ``name`` and ``filename`` (UTF-8)."""
    return b'%s; name="%s"; filename="%s"' % (
        disposition or b"form-data",
        _quote(name.decode("latin-1")).encode("latin-1"),
        _quote(filename).encode("utf-8"),
    )


def _quote(value: str) -> str:
    # What browsers do (HTML form submission): percent-encode the quote, and the
    # backslash so no parser reads it as an escape.
    return value.replace("\\", "%5C").replace('"', "%22")
