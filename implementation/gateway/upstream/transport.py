"""An httpx transport over aiohttp's connection pool, with httpx's pool semantics.

Why not httpx's own transport (httpcore 1.0.9): its pool scans every
connection on each request and response, so its CPU cost grows with the pool,
and a worker that must hold one connection per live HTTP/1.1 stream needs a
pool of a thousand (measured: README, "The gateway fast path"). Why not the
``httpx-aiohttp`` package: it maps httpx's *pool* timeout onto aiohttp's
*connect* timeout and maps connection refused and server disconnects to
``ConnectTimeout`` (a 504 where the contract says 502), keeps aiohttp's cookie
jar (the service's cookies would ride along on the next user's request) and
ignores ``max_keepalive_connections``.

What this transport keeps of ``httpx.Limits`` / ``httpx.Timeout``:

- ``max_connections``: requests in flight (a slot is held from the request
  until its response is closed, like a pooled HTTP/1.1 connection); waiting
  longer than ``pool`` for a slot raises ``httpx.PoolTimeout``. A waiter that
  is cancelled leaves the queue and takes no slot with it.
- ``max_keepalive_connections``: idle connections beyond it are closed when
  they are released; ``keepalive_expiry``: idle ones older than it are closed.
- ``connect`` bounds the TCP connect, ``read`` every wait for response bytes.
  ``write`` is not enforced separately (aiohttp has no write timeout): a body
  the service does not read stalls on ``read`` once the headers are overdue.

aiohttp's failures become the httpx exceptions httpcore raises for the same
event, so gateway/proxy/failures.py maps them as before. A response closed before
its end closes its connection instead of returning it to the pool. The
session has no cookie jar, never decompresses and never follows redirects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey

__all__ = ["AiohttpTransport"]

#: The most one read hands out: whatever has arrived, up to this much.
CHUNK_SIZE = 64 * 1024

# Most specific first: the first class an error is an instance of wins.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.ClientError, httpx.TransportError),
    (TimeoutError, httpx.ReadTimeout),
)


@contextlib.contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except (TimeoutError, aiohttp.ClientError) as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc) or type(exc).__name__, request=request) from exc
        raise  # pragma: no cover (ClientError is always matched)


class _KeepAliveLimitConnector(aiohttp.TCPConnector):
    """A TCP connector that keeps at most ``max_keepalive`` idle connections per host.

    aiohttp keeps every released connection until ``keepalive_timeout``; the
    limit is applied where a connection is released (``_release``, the hook
    aiohttp itself uses; a unit test pins its behaviour).
    """

    def __init__(self, *, max_keepalive: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_keepalive = max_keepalive

    def _release(
        self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False
    ) -> None:
        if self._max_keepalive is not None and len(self._conns.get(key, ())) >= (
            self._max_keepalive
        ):
            should_close = True
        super()._release(key, protocol, should_close=should_close)

    def idle_connections(self) -> int:
        """Idle pooled connections (for tests and diagnostics)."""
        return sum(len(conns) for conns in self._conns.values())


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one aiohttp response; closing it frees its pool slot once."""

    def __init__(
        self, response: aiohttp.ClientResponse, request: httpx.Request, slots: asyncio.Semaphore
    ) -> None:
        self._response = response
        self._request = request
        self._slots: asyncio.Semaphore | None = slots

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with _httpx_errors(self._request):
            try:
                # Whatever has arrived (up to CHUNK_SIZE), as soon as it has: an
                # event is never held back waiting for more bytes.
                while chunk := await content.read(CHUNK_SIZE):
                    yield chunk
            except (TimeoutError, aiohttp.ClientError):
                # aiohttp raises a broken connection's error ahead of the bytes
                # that arrived before it broke; httpcore hands those out first,
                # and so does this (a relay must not lose the events it got).
                if rest := _buffered(content):
                    yield rest
                raise

    async def aclose(self) -> None:
        # release() returns a fully read connection to the pool and closes an
        # unfinished one (its payload is not at EOF), like httpcore does.
        self._response.release()
        if self._slots is not None:
            slots, self._slots = self._slots, None
            slots.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=AiohttpTransport(limits=...))``; HTTP/1.1 only.

    The aiohttp session is created on first use, inside the running loop, and
    belongs to that loop (as the client does: gateway/upstream/client.py).
    """

    def __init__(self, *, limits: httpx.Limits) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None

    def _open(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        limits = self._limits
        connector = _KeepAliveLimitConnector(
            max_keepalive=limits.max_keepalive_connections,
            limit=0,  # the semaphore below is the limit, with httpx's pool timeout
            keepalive_timeout=limits.keepalive_expiry,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None),
        )
        # None means "no limit" in httpx; a semaphore that large never blocks.
        self._slots = asyncio.Semaphore(limits.max_connections or 2**31 - 1)
        return self._session, self._slots

    @property
    def connector(self) -> _KeepAliveLimitConnector | None:
        return None if self._session is None else self._session.connector  # type: ignore[return-value]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None or self._slots is None:
            session, slots = self._open()
        else:
            session, slots = self._session, self._slots
        timeout = request.extensions.get("timeout", {})
        if slots.locked():  # the pool is full: queue, for at most the pool timeout
            try:
                async with asyncio.timeout(timeout.get("pool")):
                    await slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("No pooled connection came free in time.") from None
        else:
            await slots.acquire()  # returns at once (no await in between to lose the slot)

        try:
            with _httpx_errors(request):
                response = await session.request(
                    request.method,
                    str(request.url),
                    headers=[
                        (name.decode("latin-1"), value.decode("latin-1"))
                        for name, value in request.headers.raw
                    ],
                    data=_body(request),
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        sock_connect=timeout.get("connect"),
                        sock_read=timeout.get("read"),
                    ),
                )
        except BaseException:
            slots.release()
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response, request, slots),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _buffered(content: aiohttp.StreamReader) -> bytes:
    """The bytes still buffered in a stream that already failed (aiohttp internals)."""
    if not getattr(content, "_buffer", None):
        return b""
    return content._read_nowait(-1)


def _body(request: httpx.Request) -> bytes | AsyncIterator[bytes] | None:
    try:
        content = request.content
    except httpx.RequestNotRead:
        return _chunks(request.stream)  # type: ignore[arg-type]
    return content or None


async def _chunks(stream: httpx.AsyncByteStream) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk
