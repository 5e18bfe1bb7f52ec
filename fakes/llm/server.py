"""Serving the fake with uvicorn, counting every TCP connection it accepts.

Counting happens in the HTTP protocol's `connection_made`, the one place that sees a
connection even when no request ever arrives on it; the class is built per app so two
fakes in one process keep separate counts.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from fakes.llm.state import FakeLLMState


def counting_protocol(state: FakeLLMState) -> type[asyncio.Protocol]:
    """uvicorn's default HTTP protocol, plus a count of accepted connections in `state`."""

    class CountingProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            state.connection_accepted()
            super().connection_made(transport)

    return CountingProtocol


def build_config(
    app: Starlette, *, host: str = "127.0.0.1", port: int = 8100, log_level: str = "warning"
) -> uvicorn.Config:
    """A uvicorn config for `app` (from `create_app()`) that counts connections."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=counting_protocol(app.state.fake),
        ws="none",
        lifespan="off",
        log_level=log_level,
        timeout_graceful_shutdown=1,
    )


def bound_port(server: uvicorn.Server) -> int:
    """The port the started server listens on (useful with port 0)."""
    for listener in server.servers:
        for sock in listener.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
    return server.config.port


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls `announce(url)` once it listens."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[str], None]) -> None:
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            host = self.config.host
            host = f"[{host}]" if ":" in host else host
            self._announce(f"http://{host}:{bound_port(self)}")
