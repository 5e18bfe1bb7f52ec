"""Records every `/v1` request and watches its connection.

A pure ASGI middleware reads the body once, claims the matching behaviour, and then
owns `receive`: a listener task waits for `http.disconnect` so `aborted` is set the
moment the client goes away, even while the endpoint sleeps, holds or hangs.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fakes.llm.behaviours import Behaviour, Claim
from fakes.llm.errors import openai_error

if TYPE_CHECKING:
    from fakes.llm.state import FakeLLMState

SCOPE_KEY = "fakes.llm.exchange"
STORED_BODY = 64 * 1024
MAX_BODY = 32 * 1024 * 1024
MAX_BODY_MESSAGES = 100_000
MAX_LISTEN_MESSAGES = 1_000


@dataclass
class Record:
    """One request as `GET /_control/requests` shows it."""

    id: int
    method: str
    path: str
    headers: list[list[str]]
    body: str
    body_size: int
    match: str | None
    http_version: str
    client: str | None
    user: str | None
    json: Any
    aborted: bool = False
    completed: bool = False
    bytes_sent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Exchange:
    """What an endpoint needs about its request: body, record, behaviour, disconnect signal."""

    def __init__(
        self, record: Record, body: bytes, payload: Any, claim: Claim | None, default: Behaviour
    ) -> None:
        self.record = record
        self.body = body
        self.payload = payload
        self.claim = claim
        self.default = default
        self.disconnected = asyncio.Event()

    @property
    def behaviour(self) -> Behaviour:
        return self.claim.behaviour if self.claim else self.default

    async def pause(self, seconds: float, until: asyncio.Event | None = None) -> bool:
        """Wait `seconds`, or less if `until` is set; return False if the client went away."""
        if seconds > 0 and not self.disconnected.is_set():
            waiters = [asyncio.ensure_future(self.disconnected.wait())]
            if until is not None:
                waiters.append(asyncio.ensure_future(until.wait()))
            try:
                await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        return not self.disconnected.is_set()

    async def hold(self, limit: float) -> bool:
        """Wait for the test to release this request's behaviour (at most `limit` seconds)."""
        if self.claim is None:
            return not self.disconnected.is_set()
        self.claim.gate.waiting += 1
        try:
            return await self.pause(limit, until=self.claim.ticket)
        finally:
            self.claim.gate.waiting -= 1


def parse_json(body: bytes) -> Any:
    """The parsed body, or None; NaN and Infinity are refused so records stay valid JSON."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        return json.loads(body, parse_constant=refuse)
    except (ValueError, RecursionError):
        return None


def build_record(record_id: int, scope: Scope, body: bytes, claim: Claim | None) -> Record:
    payload = parse_json(body)
    user = payload.get("user") if isinstance(payload, dict) else None
    client = scope.get("client")
    return Record(
        id=record_id,
        method=scope["method"],
        path=scope["path"],
        headers=[[k.decode("latin-1").lower(), v.decode("latin-1")] for k, v in scope["headers"]],
        body=body[:STORED_BODY].decode("utf-8", errors="replace"),
        body_size=len(body),
        match=claim.match if claim else None,
        http_version=scope.get("http_version", "1.1"),
        client=f"{client[0]}:{client[1]}" if client else None,
        user=user if isinstance(user, str) else None,
        json=payload,
    )


async def read_body(receive: Receive) -> tuple[bytes, str]:
    """Read the whole request body; the outcome is "complete", "disconnected" or "too_large"."""
    chunks: list[bytes] = []
    size = 0
    for _ in range(MAX_BODY_MESSAGES):
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), "disconnected"
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return b"".join(chunks), "too_large"
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), "complete"
    return b"".join(chunks), "too_large"


def is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class RecorderMiddleware:
    """Records `/v1` requests and hands the endpoint an `Exchange` in the scope."""

    def __init__(self, app: ASGIApp, state: FakeLLMState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        body, outcome = await read_body(receive)
        claim = self.state.behaviours.claim(body) if outcome == "complete" else None
        record = self.state.add_record(scope, body, claim)
        if outcome == "disconnected":
            record.aborted = True
            return
        if outcome == "too_large":
            await openai_error(413, "Request body too large for the fake.")(scope, receive, send)
            record.completed = True
            return
        exchange = Exchange(record, body, record.json, claim, self.state.default)
        listener = asyncio.create_task(self._listen(receive, exchange))
        body_sent = False

        async def replay() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await exchange.disconnected.wait()
            return {"type": "http.disconnect"}

        async def recording_send(message: Message) -> None:
            is_body = message["type"] == "http.response.body"
            if is_body and not exchange.disconnected.is_set():
                record.bytes_sent += len(message.get("body", b""))
            await send(message)
            if is_body and not message.get("more_body", False):
                record.completed = not exchange.disconnected.is_set()

        try:
            await self.app({**scope, SCOPE_KEY: exchange}, replay, recording_send)
        finally:
            listener.cancel()

    @staticmethod
    async def _listen(receive: Receive, exchange: Exchange) -> None:
        for _ in range(MAX_LISTEN_MESSAGES):
            message = await receive()
            if message["type"] == "http.disconnect":
                if not exchange.record.completed:
                    exchange.record.aborted = True
                exchange.disconnected.set()
                return
