"""The ``/_control/`` API tests use to program the fake and read what it saw."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import State
from starlette.types import Receive, Scope, Send

from fakes.service.behaviours import BehaviourError, parse_behaviour
from fakes.service.responses import send_bytes, send_json, send_problem

PREFIX = "/_control/"
MAX_CONTROL_BODY = 1024 * 1024
MAX_RECEIVES = 10_000


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None if the client left or it is too large."""
    chunks: list[bytes] = []
    size = 0
    for _ in range(MAX_RECEIVES):
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_CONTROL_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
    return None


async def _behaviours(state: State, receive: Receive, send: Send) -> None:
    body = await _read_body(receive)
    if body is None:
        await send_problem(send, 413, "control body missing or larger than 1 MiB")
        return
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        await send_problem(send, 400, "control body is not JSON")
        return
    try:
        behaviour = parse_behaviour(data)
    except BehaviourError as exc:
        await send_problem(send, 422, str(exc))
        return
    state.behaviours.register(behaviour)
    await send_json(send, 201, {"match": behaviour.match})


async def handle(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """Dispatch one control request (no auth: control routes are for tests only)."""
    method, path = scope["method"], scope["path"]
    name = path[len(PREFIX) :]
    if name.startswith("release/") and len(name) > len("release/"):
        if method != "POST":
            await send_problem(send, 405, "use POST", [(b"allow", b"POST")])
            return
        released = state.holds.release(name[len("release/") :])
        await send_json(send, 200, {"released": released})
        return
    allowed = {
        "behaviours": ("GET", "POST"),
        "requests": ("GET",),
        "connections": ("GET",),
        "reset": ("POST",),
    }.get(name)
    if allowed is None:
        await send_problem(send, 404, f"no control route {path}")
        return
    if method not in allowed:
        allow = ", ".join(allowed).encode()
        await send_problem(send, 405, f"use {' or '.join(allowed)}", [(b"allow", allow)])
        return
    if name == "behaviours" and method == "POST":
        await _behaviours(state, receive, send)
    elif name == "behaviours":
        await send_json(send, 200, state.behaviours.to_json())
    elif name == "requests":
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        match = query.get("match", [None])[0]
        await send_json(send, 200, state.recorder.to_json(match))
    elif name == "connections":
        await send_json(send, 200, state.connections.to_json())
    else:
        state.behaviours.clear()
        state.recorder.clear()
        state.connections.reset()
        state.holds.release_all()
        await send_bytes(send, 204, b"", None)
