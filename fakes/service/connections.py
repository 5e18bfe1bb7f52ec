"""Counting TCP connections, which ASGI cannot see, at the uvicorn protocol level.

GW-PROXY-1 tests need to know how many connections a gateway opened; every accepted
socket gets its own protocol instance, so ``connection_made``/``connection_lost``
on a subclass of uvicorn's HTTP protocol count them exactly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _BaseProtocol
except ImportError:  # pragma: no cover - httptools is part of uvicorn[standard]
    from uvicorn.protocols.http.h11_impl import H11Protocol as _BaseProtocol  # type: ignore[assignment]


#: Scope extension holding ``{"abort": callable}``: drops the TCP connection at once.
ABORT_EXTENSION = "fakes.abort"


@dataclass
class ConnectionCounter:
    """``accepted`` since the last reset; ``open`` right now (never reset)."""

    accepted: int = 0
    open: int = 0
    tracked: bool = False

    def opened(self) -> None:
        self.accepted += 1
        self.open += 1

    def closed(self) -> None:
        self.open = max(0, self.open - 1)

    def reset(self) -> None:
        self.accepted = 0

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "open": self.open, "tracked": self.tracked}


def counting_protocol(counter: ConnectionCounter) -> type[asyncio.Protocol]:
    """A uvicorn HTTP protocol class (for ``uvicorn.Config(http=...)``) that counts."""
    counter.tracked = True

    class CountingProtocol(_BaseProtocol):
        def on_message_begin(self) -> None:
            super().on_message_begin()
            # ASGI cannot close a connection without answering; the ``close``
            # behaviour needs to (a server that dies before its headers).
            self.scope["extensions"] = {ABORT_EXTENSION: {"abort": self.transport.abort}}  # type: ignore[typeddict-unknown-key]

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            counter.opened()
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            try:
                super().connection_lost(exc)
            finally:
                counter.closed()

    return CountingProtocol
