"""Readiness of the service (OPS-PROBE-2, OPS-PROBE-3): the LLM answers, and no stop began.

The LLM check asks ``GET {LLM_BASE_URL}/models`` over a one-connection client of its
own, so a busy LLM pool never reads as "not ready": any answer below 500 means the
LLM is reachable (a 401 of a bad key is a configuration fault the chat routes report
as they run). Results are kept for ``ttl`` seconds and concurrent probes share one
run. A SIGTERM or SIGINT fails readiness at once; the server's own handler still
runs after ours, so uvicorn stops accepting and lets open requests finish.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import httpx

from fastapi_service.core.config import Settings

OK, FAIL = "ok", "fail"
CHECK_TIMEOUT = 2.0


class Readiness:
    def __init__(self, settings: Settings, *, ttl: float = 1.0) -> None:
        self._url = f"{settings.llm_base_url.rstrip('/')}/models"
        self._headers = {"Accept": "application/json"}
        if settings.llm_api_key:
            self._headers["Authorization"] = f"Bearer {settings.llm_api_key}"
        self.ttl = ttl
        self.draining = False
        self._client: httpx.AsyncClient | None = None
        self._last: tuple[float, dict[str, str]] | None = None
        self._running: asyncio.Future[dict[str, str]] | None = None

    def install_signal_hook(self) -> None:
        """Chain in front of the server's SIGTERM/SIGINT handlers (main thread only)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                previous = signal.getsignal(signum)
                if callable(previous):
                    signal.signal(signum, self._chained(previous))
            except ValueError:  # not the main thread: an embedded server
                return

    def _chained(
        self, previous: Callable[[int, FrameType | None], Any]
    ) -> Callable[[int, FrameType | None], None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.draining = True  # a plain store: safe in a signal handler
            previous(signum, frame)

        return handler

    async def checks(self) -> dict[str, str]:
        if self.draining:
            return {"draining": FAIL}
        if self._last is not None and time.monotonic() - self._last[0] < self.ttl:
            return self._last[1]
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._run())
        checks = await asyncio.shield(self._running)
        return {"draining": FAIL} if self.draining else checks

    async def _run(self) -> dict[str, str]:
        checks = {"draining": OK, "llm": OK if await self._llm_answers() else FAIL}
        self._last = (time.monotonic(), checks)
        return checks

    async def _llm_answers(self) -> bool:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=CHECK_TIMEOUT,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                trust_env=False,
                follow_redirects=False,
            )
        try:
            response = await self._client.get(self._url, headers=self._headers)
        except httpx.HTTPError:
            return False
        return response.status_code < 500

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
