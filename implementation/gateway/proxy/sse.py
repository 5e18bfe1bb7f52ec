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
_TERMINAL_LINE = re.compile(rb"event: ?(?:done|error)(?:\r\n?|\n|\Z)")
_DONE_LINE = re.compile(rb"(?:\A|[\r\n])event: ?done(?:\r\n?|\n|\Z)")
MAX_PENDING = 64 * 1024
_NEWLINE_WALK = 64


class EventBoundaryBuffer:
    """Splits a byte stream into "safe to forward" and "held back" parts.

    An event longer than ``max_pending`` is forwarded raw instead of growing
    the buffer without bound; ``at_boundary`` then turns False until the
    next boundary is forwarded. Every byte is looked at by C-speed searches
    only (``bytes.rfind``, one regex with a literal prefix), and chunks of
    whole events pass through uncopied: the relay runs at bulk speed.
    """

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._pending = b""
        self._max_pending = max_pending
        self.at_boundary = True
        self.finished = False  # a done or error event was forwarded
        self.done = False  # ... and it was done

    def feed(self, chunk: bytes) -> bytes:
        """Add ``chunk``; return the bytes that end on an event boundary."""
        if not chunk:
            return b""
        if self._pending:
            # Search from a little before the new data: a boundary may straddle chunks.
            start = max(0, len(self._pending) - 3)
            data = self._pending + chunk
        else:
            start, data = 0, bytes(chunk)
        end = len(data) if data.endswith(_BOUNDARIES) else _last_boundary_end(data, start)
        out, self._pending = data[:end], data[end:]
        if end:
            self.at_boundary = True
        if len(self._pending) > self._max_pending:
            out, self._pending = data, b""
            self.at_boundary = False
        if out and not self.finished and has_terminal_event(out):
            self.finished = True
            self.done = _DONE_LINE.search(out) is not None  # once per stream
        return out

    def flush(self) -> bytes:
        """The held tail, at a clean end of a finished stream."""
        out, self._pending = self._pending, b""
        return out

    def error_event(self, problem_json: bytes) -> bytes:
        """One ``event: error``, starting on a boundary; drops the partial event."""
        self._pending = b""
        prefix = b"" if self.at_boundary else b"\n\n"
        self.at_boundary = True
        return prefix + b"event: error\ndata: " + problem_json + b"\n\n"


def has_terminal_event(data: bytes) -> bool:
    """Whether ``data`` holds a line ``event: done`` or ``event: error``.

    Such a line starts ``data`` or follows a line end. With ``\\n`` line ends,
    newlines are found with ``memchr`` (``bytes.find`` of one byte), which
    skips a bulk event's payload at memory speed; past ``_NEWLINE_WALK``
    newlines (many small events), or when bare ``\\r`` line ends may occur,
    one regex search with a literal prefix takes over, which also runs in C.
    ``re.search(rb"(?m)^event: ...")`` would try every position: a tenth of
    the direct throughput on bulk streams.
    """
    if b"\r" in data:  # a memchr; CR line ends are rare
        return _terminal_line_after(data, 0)
    at = 0
    for _ in range(_NEWLINE_WALK):
        if data.startswith(b"event:", at) and _TERMINAL_LINE.match(data, at):
            return True
        newline = data.find(b"\n", at)
        if newline < 0:
            return False
        at = newline + 1
    return _terminal_line_after(data, at)


def _terminal_line_after(data: bytes, at: int) -> bool:
    """A terminal event line starting at ``at`` or later (``at`` is a line start)."""
    match = _TERMINAL_LINE.search(data, at)
    while match is not None:
        start = match.start()
        if start == at or data[start - 1] in b"\r\n":  # "^": at a line start
            return True
        match = _TERMINAL_LINE.search(data, start + 1)
    return False


def _last_boundary_end(data: bytes, start: int) -> int:
    """Index just past the last event boundary at or after ``start``, or 0."""
    # The last "\n" (memrchr) usually ends the last boundary; a line end that is
    # not part of one sends the search one newline further back.
    end = 0
    stop = len(data)
    for _ in range(_NEWLINE_WALK):
        index = data.rfind(b"\n", start, stop)
        if index <= start:
            break
        if data[index - 1] == 0x0A:
            end = index + 1
            break
        stop = index
    else:
        index = data.rfind(b"\n\n", start, stop)
        end = index + 2 if index >= 0 else 0
    if data.find(b"\r", start) >= 0:  # CR line ends too (a memchr: cheap when absent)
        for boundary in _BOUNDARIES[1:]:
            index = data.rfind(boundary, start)
            if index >= 0:
                end = max(end, index + len(boundary))
    return end
