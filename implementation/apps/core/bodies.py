"""Reading request bodies before they are forwarded.

JSON bodies are checked (content type, size, a JSON object) and then
forwarded byte for byte. Uploads are measured, never rebuilt: the raw
multipart body goes to the service with its own Content-Type (boundary
included), streamed in chunks from a spool.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser

from apps.core.problems import ProblemError

CHUNK_SIZE = 64 * 1024
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


async def read_upload(request: HttpRequest) -> tuple[AsyncIterator[bytes], int, str]:
    """(body chunks, body length, Content-Type) of a multipart upload.

    Refused before anything is sent upstream: 415 unless multipart/form-data,
    413 when one part (the file) exceeds MAX_UPLOAD_SIZE or the whole body
    exceeds it plus MULTIPART_OVERHEAD (checked on Content-Length first, then
    by counting, so a body without Content-Length is bounded too), 400 when
    the body is not multipart at all. The bytes are copied to a spool as they
    are checked and forwarded from there unchanged.
    """
    if request.content_type != MULTIPART or not request.content_params.get("boundary"):
        raise ProblemError(415, "Send the upload as multipart/form-data.")
    declared = request.META.get("CONTENT_LENGTH", "")
    if declared and not declared.isdigit():
        raise ProblemError(400, "Content-Length is not a number.")
    if declared and int(declared) > _body_limit():
        raise ProblemError(413, _too_large())
    # Parsing 10 MiB takes tens of milliseconds: keep it off the event loop.
    spool, size = await sync_to_async(_spool_checked, thread_sensitive=False)(request)
    return _chunks(spool), size, request.META["CONTENT_TYPE"]


def _spool_checked(request: HttpRequest) -> tuple[IO[bytes], int]:
    guard = _PartSizeGuard(request.content_params["boundary"], settings.MAX_UPLOAD_SIZE)
    limit = _body_limit()
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 (closed by _chunks)
    size = 0
    try:
        while chunk := request.read(CHUNK_SIZE):
            size += len(chunk)
            if size > limit:
                raise ProblemError(413, _too_large())
            guard.write(chunk)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, size


class _PartSizeGuard:
    """Measures each part of a multipart stream (python-multipart, as the service uses)."""

    def __init__(self, boundary: str, max_part: int) -> None:
        self._max_part = max_part
        self._part = 0
        try:
            self._parser = MultipartParser(
                boundary.encode("latin-1"),
                callbacks={"on_part_begin": self._begin, "on_part_data": self._data},
            )
        except (FormParserError, UnicodeError):
            raise ProblemError(400, "The multipart boundary is not valid.") from None

    def _begin(self) -> None:
        self._part = 0

    def _data(self, data: bytes, start: int, end: int) -> None:
        self._part += end - start

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except (FormParserError, UnicodeError):
            raise ProblemError(400, "The upload is not a valid multipart body.") from None
        if self._part > self._max_part:
            raise ProblemError(413, _too_large())


async def _chunks(spool: IO[bytes]) -> AsyncIterator[bytes]:
    # Reads hit a local spool (memory, or a temp file past 1 MiB): no network
    # wait, so reading synchronously here does not stall the loop.
    try:
        while chunk := spool.read(CHUNK_SIZE):
            yield chunk
    finally:
        spool.close()


def _body_limit() -> int:
    return settings.MAX_UPLOAD_SIZE + settings.MULTIPART_OVERHEAD


def _too_large() -> str:
    return f"The upload is larger than {settings.MAX_UPLOAD_SIZE} bytes."
