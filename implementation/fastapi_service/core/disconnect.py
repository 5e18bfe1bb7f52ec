"""Stop waiting for the LLM when the caller has gone away.

uvicorn does not cancel a request handler when its client disconnects: only
streaming responses notice. Without this, a gateway timeout or an aborted browser
request would keep an LLM call (and its pooled connection) busy until the LLM
finished. `until_disconnect` races the work against `http.disconnect` and cancels
the work, which closes the LLM connection, when the caller leaves first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The caller closed the connection before the answer was ready."""


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it and raising `ClientDisconnected` if the caller leaves.

    Call it only after the request body has been read: the watcher consumes
    `receive()` messages, and the body is all it could otherwise take.
    """
    work_task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({work_task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if work_task.done():
            return work_task.result()
        if watcher.exception() is None:
            raise ClientDisconnected
        # The watcher itself failed: that says nothing about the caller, keep waiting.
        return await work_task
    finally:
        for task in (work_task, watcher):
            task.cancel()
        # Let the cancelled work run its cleanup (closing the LLM response) now.
        await asyncio.wait({work_task, watcher})


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
