"""The fake internal service: a pure ASGI app answering like the real one, or as told.

Flow of a service request: read the whole body (behaviours match on it), record it,
check the shared secret, route, pick a behaviour, then answer while a watcher listens
for ``http.disconnect`` so an abort is noticed (and recorded) at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from starlette.datastructures import State
from starlette.types import Receive, Scope, Send

from fakes.service import control
from fakes.service.auth import secret_problem
from fakes.service.behaviours import Behaviour, BehaviourRegistry
from fakes.service.connections import ABORT_EXTENSION, ConnectionCounter
from fakes.service.holds import Holds
from fakes.service.recorder import Recorder, RequestRecord
from fakes.service.responses import (
    JSON,
    TEXT,
    dumps,
    encode_headers,
    problem,
    send_bytes,
    send_json,
    send_problem,
)
from fakes.service.routes import ROUTES, Route, json_object, prompt_text, text_of, usage
from fakes.service.streaming import StreamCut, send_stream

MAX_BODY = 64 * 1024 * 1024
MAX_RECEIVES = 1_000_000
MAX_LIFESPAN_MESSAGES = 16
# Starts like a reply, then stops: what a truncated upstream answer looks like.
MALFORMED_BODY = b'{"reply": "this is not valid JSON'
DEFAULT_PLAN = Behaviour(match="")


async def read_body(receive: Receive) -> tuple[bytes, int, bool]:
    """``(body kept, full size, client left)``; bytes beyond ``MAX_BODY`` are counted only."""
    chunks: list[bytes] = []
    kept = size = 0
    for _ in range(MAX_RECEIVES):
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), size, True
        chunk = message.get("body", b"")
        size += len(chunk)
        if kept + len(chunk) <= MAX_BODY:
            chunks.append(chunk)
            kept += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), size, False
    return b"".join(chunks), max(size, MAX_BODY + 1), False


async def _wait_disconnect(receive: Receive) -> None:
    # Once the body is read, uvicorn's receive() blocks until the client goes away
    # (or the response completes), so this normally returns on the first message.
    for _ in range(MAX_RECEIVES):
        if (await receive())["type"] == "http.disconnect":
            return
    await asyncio.Event().wait()  # cancelled by the caller when the answer ends


async def answer_until_disconnect(
    answer: Coroutine[Any, Any, None], receive: Receive, record: RequestRecord
) -> None:
    """Run ``answer``; cancel it and mark the record aborted if the client leaves."""
    task = asyncio.ensure_future(answer)
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done or record.completed:
            await task  # re-raises a deliberate StreamCut so uvicorn drops the socket
            return
        record.aborted = True
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
        await asyncio.wait({task, watcher})
        if not task.cancelled():
            task.exception()  # mark it retrieved: after an abort nobody wants it


class FakeService:
    """ASGI app; all mutable state lives on ``self.state`` (no module globals)."""

    def __init__(self, secret: str | None = None) -> None:
        self.state = State()
        self.state.secret = secret or None
        self.state.behaviours = BehaviourRegistry()
        self.state.recorder = Recorder()
        self.state.holds = Holds()
        self.state.connections = ConnectionCounter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["path"].startswith(control.PREFIX):
                await control.handle(self.state, scope, receive, send)
            else:
                await self._service(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        for _ in range(MAX_LIFESPAN_MESSAGES):
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.state.holds.release_all()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _service(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, size, gone = await read_body(receive)
        record: RequestRecord = self.state.recorder.start(scope, body, size)
        if gone:
            record.aborted = True
            return
        send = record.tracking(send)
        refused = secret_problem(scope, self.state.secret)
        if refused is not None:
            await send_problem(send, *refused)
            return
        route = ROUTES.get(scope["path"])
        if route is None:
            await send_problem(send, 404, f"no route {scope['path']}")
            return
        if scope["method"] != route.method:
            allow = [(b"allow", route.method.encode())]
            await send_problem(send, 405, f"use {route.method}", allow)
            return
        if size > MAX_BODY:
            await send_problem(send, 413, "request body larger than the fake keeps")
            return
        record.match, behaviour = self.state.behaviours.select(body)
        answer = self._answer(scope, body, route, behaviour or DEFAULT_PLAN, send)
        await answer_until_disconnect(answer, receive, record)

    async def _answer(
        self, scope: Scope, body: bytes, route: Route, plan: Behaviour, send: Send
    ) -> None:
        """Answer as ``plan`` says; the checks go from most to least disruptive."""
        extra = encode_headers(plan.headers)
        status = plan.status
        if plan.delay:
            await asyncio.sleep(plan.delay)
        if plan.close:
            abort = scope.get("extensions", {}).get(ABORT_EXTENSION, {}).get("abort")
            if abort is None:  # not under the counting protocol: the closest we can do
                raise StreamCut("close before headers")
            abort()
        elif plan.hang:
            await self.state.holds.hang()
            await send_problem(send, 504, "fake service hang ended by a reset or its limit", extra)
        elif plan.malformed:
            await send_bytes(send, status or 200, MALFORMED_BODY, plan.content_type or JSON, extra)
        elif plan.streams_on(route.streams):
            data = json_object(body)
            prompt = prompt_text(data)
            await send_stream(
                send,
                plan,
                status=status or 200,
                message=text_of(data.get("message")),
                usage=lambda completion: usage(prompt, completion),
                extra_headers=extra,
                hold=lambda: self.state.holds.hold(plan.match),
            )
        elif isinstance(plan.body, str):
            payload = plan.body.encode("utf-8")
            await send_bytes(send, status or 200, payload, plan.content_type or TEXT, extra)
        elif plan.body is not None:
            await send_json(send, status or 200, plan.body, plan.content_type, extra)
        elif status is not None and status >= 400:
            detail = problem(status, "fake service behaviour")
            await send_json(send, status, detail, plan.content_type, extra)
        else:
            payload = plan.reply if plan.reply is not None else await route.handler(scope, body)
            await send_bytes(send, status or 200, dumps(payload), plan.content_type or JSON, extra)


def create_app(secret: str | None = None) -> FakeService:
    """The fake service; with ``secret`` every route but /health and /_control/ needs it."""
    return FakeService(secret)
