"""Draining: what a gateway process does between SIGTERM and its exit (OPS-DRAIN-*).

uvicorn, on SIGTERM, stops accepting, closes idle keep-alive connections and waits for
the open ones, but tells the application nothing: its shutdown message to open streams
was reverted (Kludex/uvicorn#2913), and the lifespan's shutdown comes only after the last
connection closed. A stream could then run for as long as the LLM talks. So the gateway
hooks the signal itself (:func:`install`): from that moment readiness fails, and every
open stream has ``GATEWAY_DRAIN_TIMEOUT`` seconds left; a stream still open then ends
after its last whole event with one error event, and its upstream request is closed,
which the service passes on to the LLM. JSON requests are left to finish.

A relay reads the upstream body under :meth:`Drain.watch` (one ``asyncio.timeout`` per
read, moved to the deadline when draining begins), so a read blocked on a quiet LLM
ends at the deadline too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

#: The signals that start draining: a supervisor's stop, and Ctrl-C.
SIGNALS = (signal.SIGTERM, signal.SIGINT)
RESTARTING = "The server is restarting; send the message again."


class StreamWatch:
    """One relay's view of the drain: the timeout its current read runs under."""

    __slots__ = ("_drain", "_timeout")

    def __init__(self, drain: Drain) -> None:
        self._drain = drain
        self._timeout: asyncio.Timeout | None = None

    def read(self) -> asyncio.Timeout:
        """The context one upstream read runs in: unbounded until draining, then the deadline."""
        self._timeout = asyncio.timeout_at(self._drain.deadline)
        return self._timeout

    @property
    def expired(self) -> bool:
        """Whether the drain's deadline ended the last read."""
        return self._timeout is not None and self._timeout.expired()

    def expire_at(self, deadline: float) -> None:
        timeout = self._timeout
        if timeout is not None:
            # A read that already finished cannot be moved; the next one sees the deadline.
            with contextlib.suppress(RuntimeError):
                timeout.reschedule(deadline)

    def close(self) -> None:
        self._drain.streams.discard(self)
        self._timeout = None


class Drain:
    """Whether this process is draining, and until when (event-loop time)."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.streams: set[StreamWatch] = set()

    @property
    def draining(self) -> bool:
        return self.deadline is not None

    def watch(self) -> StreamWatch:
        """Register one relay; call ``close()`` on the result when the relay ends."""
        watch = StreamWatch(self)
        self.streams.add(watch)
        return watch

    def begin(self, timeout: float) -> None:
        """Start draining (once): streams open now or later must end within ``timeout`` s."""
        if self.deadline is not None:
            return
        self.deadline = asyncio.get_running_loop().time() + timeout
        logger.info("draining: %d open streams get %.1f s", len(self.streams), timeout)
        for watch in list(self.streams):
            watch.expire_at(self.deadline)


#: The process's drain: one serving event loop per gateway process.
DRAIN = Drain()

Handler = Callable[[int, FrameType | None], Any] | int | None


def install(timeout: float, drain: Drain = DRAIN) -> None:
    """Chain a handler for :data:`SIGNALS` in front of the server's own (call on its loop).

    The server's handler still runs, so it stops accepting and shuts down as before;
    ours only tells the loop that draining began. A signal the server does not handle
    itself (no graceful shutdown to join) is left alone, and so is every signal off the
    main thread, where none can be hooked (an embedded server).
    """
    loop = asyncio.get_running_loop()
    for signum in SIGNALS:
        try:
            previous: Handler = signal.getsignal(signum)
            if callable(previous):
                signal.signal(signum, _chained(loop, drain, timeout, previous))
        except ValueError:  # not the main thread
            return


def _chained(
    loop: asyncio.AbstractEventLoop,
    drain: Drain,
    timeout: float,
    previous: Callable[[int, FrameType | None], Any],
) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        # A signal handler interrupts the loop between any two bytecodes: hand over.
        loop.call_soon_threadsafe(drain.begin, timeout)
        previous(signum, frame)

    return handler
