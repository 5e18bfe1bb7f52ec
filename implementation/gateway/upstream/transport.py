"""An httpx transport over aiohttp's connection pool, with httpx's pool semantics.

``httpx.AsyncClient(transport=AiohttpTransport(limits=...))``: httpx's limits,
timeouts and exceptions over aiohttp's pool (README, "The transport under
httpx", says why and what is kept). aiohttp's public API only; its internals
are reached through gateway/upstream/aiohttp_compat.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import httpx

from gateway.upstream.aiohttp_compat import KeepAliveLimitConnector, buffered

__all__ = ["AiohttpTransport", "PoolSlots", "PoolStats"]

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


@dataclass(frozen=True, slots=True)
class PoolStats:
    """The pool at one instant and since it opened (the metrics sample it: OPS-METRICS-4)."""

    in_use: int
    idle: int
    waiting: int
    requests: int
    connections_opened: int


class PoolSlots:
    """httpx's ``max_connections`` with its pool timeout, counting what it hands out."""

    def __init__(self, size: int) -> None:
        self._semaphore = asyncio.Semaphore(size)
        self.in_use = 0
        self.waiting = 0
        self.requests = 0

    async def acquire(self, pool_timeout: float | None) -> None:
        if self._semaphore.locked():  # the pool is full: queue, for at most the pool timeout
            self.waiting += 1
            try:
                async with asyncio.timeout(pool_timeout):
                    await self._semaphore.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("No pooled connection came free in time.") from None
            finally:
                self.waiting -= 1
        else:
            await self._semaphore.acquire()  # returns at once (no await to lose the slot)
        self.in_use += 1
        self.requests += 1  # one that the pool refused was never sent

    def release(self) -> None:
        self.in_use -= 1
        self._semaphore.release()


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one aiohttp response; closing it frees its pool slot once."""

    def __init__(
        self, response: aiohttp.ClientResponse, request: httpx.Request, slots: PoolSlots
    ) -> None:
        self._response = response
        self._request = request
        self._slots: PoolSlots | None = slots

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
                if rest := buffered(content):
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
        self._slots: PoolSlots | None = None

    def _open(self) -> tuple[aiohttp.ClientSession, PoolSlots]:
        limits = self._limits
        connector = KeepAliveLimitConnector(
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
        self._slots = PoolSlots(limits.max_connections or 2**31 - 1)
        return self._session, self._slots

    @property
    def connector(self) -> KeepAliveLimitConnector | None:
        return None if self._session is None else self._session.connector  # type: ignore[return-value]

    def stats(self) -> PoolStats:
        connector, slots = self.connector, self._slots
        if connector is None or slots is None:
            return PoolStats(0, 0, 0, 0, 0)
        return PoolStats(
            in_use=slots.in_use,
            idle=connector.idle_connections(),
            waiting=slots.waiting,
            requests=slots.requests,
            connections_opened=connector.connections_opened,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None or self._slots is None:
            session, slots = self._open()
        else:
            session, slots = self._session, self._slots
        timeout = request.extensions.get("timeout", {})
        await slots.acquire(timeout.get("pool"))

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


def _body(request: httpx.Request) -> bytes | AsyncIterator[bytes] | None:
    try:
        content = request.content
    except httpx.RequestNotRead:
        return _chunks(request.stream)  # type: ignore[arg-type]
    return content or None


async def _chunks(stream: httpx.AsyncByteStream) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk
