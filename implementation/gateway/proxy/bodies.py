"""Reading request bodies before they are forwarded.

JSON bodies are checked (content type, size, a JSON object) and then
forwarded byte for byte. Uploads are measured, checked and written out again
part by part (gateway/proxy/uploads.py: safe filenames, file bytes that match their
declared type) to a spool, then streamed to the service in chunks under the
same Content-Type (boundary included); the file bytes themselves are never changed.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from gateway.problems import ProblemError
from gateway.proxy.uploads import UploadRewriter, Writer

CHUNK_SIZE = 64 * 1024
SPOOL_IN_MEMORY = 1024 * 1024  # a bigger upload is spooled to a temp file
JSON = "application/json"
MULTIPART = "multipart/form-data"


def read_json_object(request: HttpRequest) -> tuple[bytes, dict[str, Any]]:
    """The raw body and its parsed object, or a ProblemError (415/413/400)."""
    if request.content_type != JSON:
        raise ProblemError(415, "Send the request body as application/json.")
    limit = settings.MAX_JSON_BODY
    try:
        raw = request.body
    except RequestDataTooBig:
        raise ProblemError(413, f"The JSON body is larger than {limit} bytes.") from None
    if len(raw) > limit:  # a body sent without Content-Length is only counted here
        raise ProblemError(413, f"The JSON body is larger than {limit} bytes.")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProblemError(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ProblemError(400, "The request body must be a JSON object.")
    return raw, data


@dataclass(frozen=True)
class OutgoingBody:
    """What the gateway sends the service as a request body, and what describes it."""

    content: bytes | AsyncIterator[bytes]
    content_type: str
    length: int | None = None  # a streamed body's length, sent as Content-Length
    sha256: bytes | None = None  # its hex digest, so a signed request leaves it unread


async def read_upload(request: HttpRequest) -> OutgoingBody:
    """A multipart upload, checked and rebuilt, Django's way.

    Refused before anything is sent upstream: 415 unless multipart/form-data,
    413 when one part (the file) exceeds MAX_UPLOAD_SIZE or the whole body
    exceeds it plus MULTIPART_OVERHEAD (checked on Content-Length first, then
    by counting, so a body without Content-Length is bounded too), 415 when
    a file's bytes do not match its declared type, 400 when the body is not
    a complete multipart body. The checked body is spooled and forwarded from
    there. The ASGI fast path runs the same checks as the body arrives
    (``check_upload_headers`` and ``UploadSpool``).
    """
    boundary = check_upload_headers(request)
    # Django has the whole body already; parsing 10 MiB of it takes tens of
    # milliseconds in one go: keep that off the event loop.
    return await sync_to_async(_spool_checked, thread_sensitive=False)(request, boundary)


def check_upload_headers(request: HttpRequest) -> str:
    """The multipart boundary, or the ProblemError the headers alone earn (415/400/413)."""
    boundary = request.content_params.get("boundary") if request.content_type == MULTIPART else None
    if not boundary:
        raise ProblemError(415, "Send the upload as multipart/form-data.")
    declared = request.META.get("CONTENT_LENGTH", "")
    if declared and not declared.isdigit():
        raise ProblemError(400, "Content-Length is not a number.")
    if declared and int(declared) > _body_limit():
        raise ProblemError(413, _too_large())
    return boundary


class UploadSpool:
    """An upload checked and rebuilt (gateway/proxy/uploads.py) into a spool as its bytes arrive.

    ``write`` raises the ProblemError a chunk earns (413 past the limits, 415,
    400); ``finish`` checks the body ended and returns it, ready to forward,
    with its rebuilt length. Whoever holds the spool closes it, or hands that
    job to the returned body's chunks.
    """

    def __init__(self, boundary: str) -> None:
        self._limit = _body_limit()
        self._received = 0
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        # Signed requests need the body's digest up front: take it on the way
        # in, so the signer need not read the spool into memory (gateway/upstream/signing.py).
        self._hash = hashlib.sha256() if settings.SERVICE_AUTH_MODE == "hmac" else None
        out = self._spool if self._hash is None else _Hashing(self._spool, self._hash)
        try:
            self._rewriter = UploadRewriter(
                boundary, out, max_part=settings.MAX_UPLOAD_SIZE, too_large=_too_large
            )
        except BaseException:
            self._spool.close()
            raise

    def write(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received > self._limit:
            raise ProblemError(413, _too_large())
        self._rewriter.write(chunk)

    def finish(self, content_type: str) -> OutgoingBody:
        """The rebuilt body, sent under the upload's own ``content_type`` (same boundary)."""
        self._rewriter.close()
        self._spool.seek(0)
        digest = None if self._hash is None else self._hash.hexdigest().encode("ascii")
        return OutgoingBody(self._chunks(), content_type, self._rewriter.size, digest)

    def close(self) -> None:
        self._spool.close()

    async def _chunks(self) -> AsyncIterator[bytes]:
        """The rebuilt body in chunks; closes the spool when done."""
        # Reads hit a local spool (memory, or a temp file past SPOOL_IN_MEMORY):
        # no network wait, so reading synchronously here does not stall the loop.
        try:
            while chunk := self._spool.read(CHUNK_SIZE):
                yield chunk
        finally:
            self._spool.close()


class _Hashing:
    """A writer that hashes what it passes on."""

    def __init__(self, out: Writer, digest: hashlib._Hash) -> None:
        self._out = out
        self._digest = digest

    def write(self, data: bytes) -> None:
        self._digest.update(data)
        self._out.write(data)


def _spool_checked(request: HttpRequest, boundary: str) -> OutgoingBody:
    spool = UploadSpool(boundary)
    try:
        while chunk := request.read(CHUNK_SIZE):
            spool.write(chunk)
        return spool.finish(request.META["CONTENT_TYPE"])
    except BaseException:
        spool.close()
        raise


def _body_limit() -> int:
    return settings.MAX_UPLOAD_SIZE + settings.MULTIPART_OVERHEAD


def _too_large() -> str:
    return f"The upload is larger than {settings.MAX_UPLOAD_SIZE} bytes."
