"""Reading request bodies before they are forwarded.

JSON bodies are checked (content type, size, a JSON object) and then
forwarded byte for byte. Uploads are measured, checked and written out again
part by part (apps/core/uploads.py: safe filenames, file bytes that match their
declared type) to a spool, then streamed to the service in chunks under the
same Content-Type (boundary included); the file bytes themselves are never changed.
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

from apps.core.problems import ProblemError
from apps.core.uploads import UploadRewriter

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
    by counting, so a body without Content-Length is bounded too), 415 when
    a file's bytes do not match its declared type, 400 when the body is not
    a complete multipart body. The checked body is spooled and forwarded from
    there.
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
    limit = _body_limit()
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 (closed by _chunks)
    try:
        rewriter = UploadRewriter(
            request.content_params["boundary"],
            spool,
            max_part=settings.MAX_UPLOAD_SIZE,
            too_large=_too_large,
        )
        size = 0
        while chunk := request.read(CHUNK_SIZE):
            size += len(chunk)
            if size > limit:
                raise ProblemError(413, _too_large())
            rewriter.write(chunk)
        rewriter.close()
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, rewriter.size


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
