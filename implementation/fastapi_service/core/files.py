"""Turn an uploaded file into text for the LLM, or refuse it with the right status.

Accepted: UTF-8 plain text and Markdown, and PDF (text extracted with pypdf).
Too large -> 413; any other type, text that is not UTF-8 or holds NUL bytes, or
a "PDF" that does not start with %PDF- -> 415 (SEC-6); a PDF pypdf cannot read
-> 422: all before the LLM is called. The upload is read in chunks and reading
stops at the limit, so no more than `MAX_FILE_BYTES` (+1 chunk) is ever held.
"""

from __future__ import annotations

import io
import logging
import unicodedata
from pathlib import PurePosixPath, PureWindowsPath

from fastapi import HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

logger = logging.getLogger("fastapi_service")

MAX_FILE_BYTES = 10 * 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024
MAX_UPLOAD_BODY = MAX_FILE_BYTES + MULTIPART_OVERHEAD
CHUNK = 64 * 1024
MAX_NAME = 200
# Control, format, surrogate, private-use, unassigned; line and paragraph separators.
UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
PDF_TYPE = "application/pdf"
GENERIC_TYPES = frozenset({"", "application/octet-stream"})
TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
PDF_MAGIC = b"%PDF-"


async def read_limited(upload: UploadFile, limit: int = MAX_FILE_BYTES) -> bytes:
    """The upload's bytes; 413 as soon as more than `limit` bytes arrive."""
    buffer = bytearray()
    while True:
        chunk = await upload.read(CHUNK)
        if not chunk:
            return bytes(buffer)
        buffer += chunk
        if len(buffer) > limit:
            raise HTTPException(413, f"The file is larger than {limit} bytes.")


def file_kind(upload: UploadFile) -> str:
    """'text' or 'pdf' from the declared type, or from the name when the type is generic."""
    declared = (upload.content_type or "").split(";", 1)[0].strip().lower()
    if declared in TEXT_TYPES:
        return "text"
    if declared == PDF_TYPE:
        return "pdf"
    if declared in GENERIC_TYPES:
        suffix = PurePosixPath(safe_name(upload.filename)).suffix.lower()
        if suffix in TEXT_SUFFIXES:
            return "text"
        if suffix == ".pdf":
            return "pdf"
    raise HTTPException(
        415,
        "Only plain text, Markdown and PDF files are accepted (text/plain, "
        "text/markdown, application/pdf).",
    )


async def extract_text(upload: UploadFile) -> str:
    """The file's text, after the size and type checks."""
    kind = file_kind(upload)
    data = await read_limited(upload)
    if kind == "text":
        if b"\x00" in data:  # UTF-8, but binary all the same (SEC-6)
            raise HTTPException(415, "Text files must not contain NUL bytes.")
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise HTTPException(415, "Text files must be encoded in UTF-8.") from None
    if not data.startswith(PDF_MAGIC):
        raise HTTPException(415, "The file is declared as a PDF but is not one.")
    # pypdf is CPU-bound and synchronous: keep it off the event loop.
    return await run_in_threadpool(_pdf_text, data)


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader  # imported lazily: only PDF uploads pay for it

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise HTTPException(422, "The PDF is encrypted.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except HTTPException:
        raise
    except Exception as exc:  # pypdf raises many types on damaged files
        logger.info("unreadable PDF upload: %s", type(exc).__name__)
        raise HTTPException(422, "The PDF could not be read.") from None
    return "\n\n".join(page.strip() for page in pages if page.strip())


def safe_name(filename: str | None) -> str:
    """A display name for the prompt: no directories, no control characters, bounded.

    Control characters go first, so none can hide a separator; a name of dots
    only (``..``) is a directory reference and becomes ``upload`` (SEC-5).
    """
    name = "".join(ch for ch in filename or "" if unicodedata.category(ch) not in UNSAFE)
    name = PureWindowsPath(PurePosixPath(name).name).name.strip()
    if not name.strip("."):
        return "upload"
    return name[:MAX_NAME]
