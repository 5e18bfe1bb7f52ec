"""deploy/protocol.py: a stopping worker answers a request sent on a keep-alive connection.

A real uvicorn server on 127.0.0.1, a raw HTTP/1.1 client on one kept-alive connection:
after the server is told to stop, a request already on its way on that connection is
answered (with ``Connection: close``) instead of meeting a closed socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from deploy import protocol

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def _server(http: type) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=port, http=http, lifespan="off", log_level="error"
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        for _ in range(200):  # bounded: 2 s
            if server.started:
                break
            await asyncio.sleep(0.01)  # poll interval
        assert server.started, "uvicorn did not start"
        yield server, port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    await asyncio.wait_for(reader.readexactly(2), 2)  # the body, "ok"
    return head


async def _second_request_after_stop(http: type) -> bytes:
    """The answer to a request sent on a kept-alive connection just after the stop."""
    async with _server(http) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(REQUEST)
            assert (await _answer(reader)).startswith(b"HTTP/1.1 200")
            server.should_exit = True  # what SIGTERM does
            for _ in range(100):  # bounded: 1 s; the main loop calls shutdown() on each
                if server.server_state.connections and all(
                    getattr(c, "draining", False) or c.transport.is_closing()
                    for c in server.server_state.connections
                ):
                    break
                await asyncio.sleep(0.01)  # poll interval
            writer.write(REQUEST)
            return await _answer(reader)
        finally:
            writer.close()


def test_the_installed_uvicorn_has_what_the_protocol_relies_on() -> None:
    assert list(protocol.problems()) == []


@pytest.mark.asyncio
async def test_a_request_on_a_kept_alive_connection_after_the_stop_is_answered() -> None:
    head = await _second_request_after_stop(protocol.DrainingProtocol)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"connection: close" in head.lower(), head


@pytest.mark.asyncio
async def test_uvicorn_s_own_protocol_closes_it_under_the_request() -> None:
    """Why the protocol exists: without it the same request meets a closed connection."""
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await _second_request_after_stop(HttpToolsProtocol)
