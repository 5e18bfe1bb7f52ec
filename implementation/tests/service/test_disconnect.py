"""Cancelling LLM work when the caller goes away (non-streaming routes)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from fastapi_service.core.disconnect import ClientDisconnected, until_disconnect

pytestmark = pytest.mark.asyncio


def request_with(receive: Any) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


async def test_work_result_is_returned() -> None:
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def work() -> int:
        return 42

    assert await until_disconnect(request_with(receive), work()) == 42


async def test_disconnect_cancels_the_work() -> None:
    cancelled = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(until_disconnect(request_with(receive), work()), timeout=2)
    assert cancelled.is_set()


async def test_work_errors_propagate() -> None:
    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}  # pragma: no cover

    async def work() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await until_disconnect(request_with(receive), work())


async def test_a_failing_watcher_does_not_abort_the_work() -> None:
    async def receive() -> dict[str, Any]:
        raise RuntimeError("receive broke")

    async def work() -> str:
        await asyncio.sleep(0.02)
        return "done"

    assert await until_disconnect(request_with(receive), work()) == "done"
