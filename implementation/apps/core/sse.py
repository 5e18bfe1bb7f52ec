"""Event-boundary bookkeeping for relaying a server-sent event stream.

The relay forwards only whole events, holding back the tail after the last
blank line. When the service fails mid-stream the held partial event is
dropped, so the gateway's own ``event: error`` starts on a boundary and the
browser never sees half an event glued to it (GW-PROXY-8). A stream is only
complete once a ``done`` (or ``error``) event went through: one that ends
cleanly without it was cut short as well.
"""

from __future__ import annotations

import re

_BOUNDARIES = (b"\n\n", b"\r\n\r\n", b"\r\r")
_TERMINAL_EVENT = re.compile(rb"(?m)^event: ?(?:done|error)\r?$")
MAX_PENDING = 64 * 1024


class EventBoundaryBuffer:
    """Splits a byte stream into "safe to forward" and "held back" parts.

    An event longer than ``max_pending`` is forwarded raw instead of growing
    the buffer without bound; ``at_boundary`` then turns False until the
    next boundary is forwarded.
    """

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._pending = bytearray()
        self._max_pending = max_pending
        self.at_boundary = True
        self.finished = False  # a done or error event was forwarded

    def feed(self, chunk: bytes) -> bytes:
        """Add ``chunk``; return the bytes that end on an event boundary."""
        if not chunk:
            return b""
        # Search from a little before the new data: a boundary may straddle chunks.
        start = max(0, len(self._pending) - 3)
        self._pending += chunk
        end = _last_boundary_end(self._pending, start)
        if end:
            out = bytes(self._pending[:end])
            del self._pending[:end]
            self.at_boundary = True
        else:
            out = b""
        if len(self._pending) > self._max_pending:
            out += bytes(self._pending)
            self._pending.clear()
            self.at_boundary = False
        if out and not self.finished and _TERMINAL_EVENT.search(out):
            self.finished = True
        return out

    def flush(self) -> bytes:
        """The held tail, at a clean end of a finished stream."""
        out = bytes(self._pending)
        self._pending.clear()
        return out

    def error_event(self, problem_json: bytes) -> bytes:
        """One ``event: error``, starting on a boundary; drops the partial event."""
        self._pending.clear()
        prefix = b"" if self.at_boundary else b"\n\n"
        self.at_boundary = True
        return prefix + b"event: error\ndata: " + problem_json + b"\n\n"


def _last_boundary_end(data: bytearray, start: int) -> int:
    """Index just past the last event boundary at or after ``start``, or 0."""
    end = 0
    for boundary in _BOUNDARIES:
        index = data.rfind(boundary, start)
        if index >= 0:
            end = max(end, index + len(boundary))
    return end
