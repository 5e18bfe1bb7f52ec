"""Running the fake under uvicorn with connection counting and a readiness callback."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import uvicorn

from fakes.service.app import FakeService
from fakes.service.connections import counting_protocol
from fakes.service.streaming import StreamCut

GRACEFUL_SHUTDOWN = 2


class _QuietStreamCuts(logging.Filter):
    """Drop uvicorn's traceback for a ``StreamCut``: the cut is the behaviour asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


class FakeServer(uvicorn.Server):
    """A uvicorn server that reports its URL once listening and unparks requests on exit."""

    def __init__(
        self, config: uvicorn.Config, app: FakeService, on_ready: Callable[[str], None] | None
    ) -> None:
        super().__init__(config)
        self._app = app
        self._on_ready = on_ready
        self.url: str | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        if self._on_ready is not None:
            self._on_ready(self.url)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Held and hanging requests would otherwise keep the graceful shutdown waiting.
        self._app.state.holds.release_all()
        await super().shutdown(sockets)


def build_server(
    app: FakeService,
    *,
    host: str = "127.0.0.1",
    port: int = 8200,
    keep_alive: float = 5.0,
    log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
) -> FakeServer:
    """A server for ``app``; ``port=0`` picks a free port (see ``on_ready``/``url``)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=counting_protocol(app.state.connections),
        ws="none",
        lifespan="on",
        # Keep scope["client"] the real peer even if a gateway sends X-Forwarded-For.
        proxy_headers=False,
        access_log=False,
        log_level=log_level,
        timeout_keep_alive=keep_alive,  # type: ignore[arg-type]  # a float works (call_later)
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    error_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietStreamCuts) for f in error_logger.filters):
        error_logger.addFilter(_QuietStreamCuts())
    return FakeServer(config, app, on_ready)
