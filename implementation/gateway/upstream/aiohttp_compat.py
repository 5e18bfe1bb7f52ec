"""Every use of aiohttp's private internals by the transport, fenced in one place.

gateway/upstream/transport.py uses aiohttp's public API plus this module.
What is here relies on attributes aiohttp does not promise to keep, so the
supported range is pinned (pyproject.toml), ``verify()`` checks their shape at
start-up (system check lamla.E004) and tests/gateway/test_aiohttp_compat.py
pins each behaviour against the installed aiohttp.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:  # annotations only: nothing below needs these at run time
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.client_reqrep import ClientRequest, ConnectionKey
    from aiohttp.tracing import Trace

__all__ = ["SUPPORTED", "IncompatibleAiohttp", "KeepAliveLimitConnector", "buffered", "verify"]

#: The aiohttp versions this module is tested with; pyproject.toml pins the same range.
SUPPORTED = ">=3.14,<3.15"


class KeepAliveLimitConnector(aiohttp.TCPConnector):
    """A TCP connector that keeps at most ``max_keepalive`` idle connections per host.

    aiohttp keeps every released connection until ``keepalive_timeout``. Relies
    on ``BaseConnector._release(key, protocol, *, should_close=False)`` being
    where aiohttp returns a connection to the pool (closing it instead when
    ``should_close``), and on ``BaseConnector._conns`` mapping each key to its
    idle connections. It counts new connections where ``TCPConnector._create_connection
    (req, traces, timeout)`` opens one: aiohttp's public TraceConfig would cost every request.
    """

    def __init__(self, *, max_keepalive: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_keepalive = max_keepalive
        #: Connections this connector opened (its pool reused the others; OPS-METRICS).
        self.connections_opened = 0

    async def _create_connection(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's own signature)
    ) -> ResponseHandler:
        protocol = await super()._create_connection(req, traces, timeout)
        self.connections_opened += 1
        return protocol

    def _release(
        self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False
    ) -> None:
        if self._max_keepalive is not None and len(self._conns.get(key, ())) >= (
            self._max_keepalive
        ):
            should_close = True
        super()._release(key, protocol, should_close=should_close)

    def idle_connections(self) -> int:
        """Idle pooled connections, all hosts (for tests and diagnostics); reads ``_conns``."""
        return sum(len(conns) for conns in self._conns.values())


def buffered(content: aiohttp.StreamReader) -> bytes:
    """What is buffered in ``content`` now, without awaiting, even after it failed.

    The public ``read_nowait()`` raises the stream's exception first. Relies on
    ``StreamReader._buffer`` (a deque, empty when nothing is buffered; unset on
    aiohttp's empty-body reader) and ``StreamReader._read_nowait(n)`` (-1: the
    whole buffer, no exception check).
    """
    if not getattr(content, "_buffer", None):
        return b""
    return content._read_nowait(-1)


class IncompatibleAiohttp(RuntimeError):
    """The installed aiohttp lacks, or has reshaped, an internal this module uses."""


def verify() -> None:
    """Raise IncompatibleAiohttp, one line naming the version, if an internal is off."""
    problems = list(_problems())
    if problems:
        raise IncompatibleAiohttp(
            f"aiohttp {aiohttp.__version__} lacks what the aiohttp transport relies on "
            f"(supported: aiohttp{SUPPORTED}): {'; '.join(problems)}"
        )


def _problems() -> Iterator[str]:
    yield from _signature_problems(
        "TCPConnector._release",
        getattr(aiohttp.TCPConnector, "_release", None),
        "self, key, protocol, *, should_close=False",
    )
    yield from _signature_problems(
        "TCPConnector._create_connection",
        getattr(aiohttp.TCPConnector, "_create_connection", None),
        "self, req, traces, timeout",
    )
    yield from _signature_problems(
        "StreamReader._read_nowait",
        getattr(aiohttp.StreamReader, "_read_nowait", None),
        "self, n",
    )
    # The instance attributes, on instances built on a loop that never runs
    # (nothing is scheduled and no socket is opened).
    loop = asyncio.new_event_loop()
    try:
        connector = aiohttp.BaseConnector(loop=loop)
        if not isinstance(getattr(connector, "_conns", None), dict):
            yield "BaseConnector._conns is not a dict"
        reader = aiohttp.StreamReader(_NoProtocol(), 2**16, loop=loop)  # type: ignore[arg-type]
        if not isinstance(getattr(reader, "_buffer", None), collections.deque):
            yield "StreamReader._buffer is not a deque"
    except Exception as exc:  # a constructor that changed is a problem to report, not a crash
        yield f"probing BaseConnector/StreamReader failed ({type(exc).__name__}: {exc})"
    finally:
        loop.close()


def _signature_problems(name: str, function: object, expected: str) -> Iterator[str]:
    """``expected`` is the parameter list as inspect renders it, without annotations."""
    if not callable(function):
        yield f"{name} is missing"
        return
    parameters = inspect.signature(function).parameters.values()
    actual = str(inspect.Signature([p.replace(annotation=p.empty) for p in parameters]))
    if actual != f"({expected})":
        yield f"{name} takes {actual}, not ({expected})"


class _NoProtocol:
    """Stands in for the protocol a StreamReader pauses and resumes (never called here)."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...
