"""Gates that park a request until a test releases it (or a reset ends the wait)."""

from __future__ import annotations

import asyncio
import contextlib

MAX_HOLD = 120.0
MAX_HANG = 300.0


class Holds:
    """Requests parked at ``hold_after`` (per match token) or by ``hang``.

    A release wakes only the requests parked at that moment; it is not remembered
    for later requests, so it can never leak from one test into the next.
    """

    def __init__(self, max_hold: float = MAX_HOLD, max_hang: float = MAX_HANG) -> None:
        self.max_hold = max_hold
        self.max_hang = max_hang
        self._held: dict[str, set[asyncio.Event]] = {}
        self._reset = asyncio.Event()

    async def hold(self, match: str) -> bool:
        """Wait until released; False when ``max_hold`` passed first."""
        gate = asyncio.Event()
        waiters = self._held.setdefault(match, set())
        waiters.add(gate)
        try:
            async with asyncio.timeout(self.max_hold):
                await gate.wait()
            return True
        except TimeoutError:
            return False
        finally:
            waiters.discard(gate)
            if not waiters and self._held.get(match) is waiters:
                del self._held[match]

    async def hang(self) -> None:
        """Wait until the next reset or ``max_hang`` (a client disconnect cancels us)."""
        reset = self._reset
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.max_hang):
                await reset.wait()

    def release(self, match: str) -> int:
        """Release every request of ``match`` parked now; return how many."""
        waiters = self._held.pop(match, set())
        for gate in waiters:
            gate.set()
        return len(waiters)

    def release_all(self) -> int:
        """Release every parked request and end every hang."""
        released = sum(self.release(match) for match in list(self._held))
        self._reset.set()
        self._reset = asyncio.Event()
        return released
