"""`POST /v1/chat/completions`: the deterministic answer, bent by the request's behaviour.

Written as a raw ASGI endpoint so every chunk is its own `send` (nothing buffers), so
a failure can cut the connection after the response started, and so every wait also
ends the moment the client disconnects.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from fakes.llm.behaviours import Behaviour
from fakes.llm.errors import openai_error
from fakes.llm.recorder import SCOPE_KEY, Exchange
from fakes.llm.replies import Reply, compose

HOLD_LIMIT = 120.0
HANG_LIMIT = 300.0
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
MALFORMED_JSON = b'{"id": "chatcmpl-fake", "object": "chat.completion", "choices": [{'
MALFORMED_EVENT = b'data: {"id": "chatcmpl-fake", "choices": [{"delta": this is not json\n\n'
DONE = b"data: [DONE]\n\n"


def validate(payload: Any) -> str | None:
    """Why the request is not a chat completion request, as OpenAI would say; None if it is."""
    if not isinstance(payload, dict):
        return "We could not parse the JSON body of your request."
    if not isinstance(payload.get("model"), str) or not payload["model"]:
        return "you must provide a model parameter"
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return f"messages[{index}] must be an object with a string 'role'"
    return None


def sse(data: dict[str, Any]) -> bytes:
    return (
        b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
    )


@dataclass(frozen=True)
class Completion:
    """The identity shared by every chunk of one answer."""

    id: str
    model: str
    created: int

    def _base(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def whole(self, reply: Reply) -> dict[str, Any]:
        message = {"role": "assistant", "content": reply.content}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        return self._base("chat.completion") | {"choices": [choice], "usage": reply.usage}

    def chunk(self, delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse(self._base("chat.completion.chunk") | {"choices": [choice]})

    def usage_chunk(self, reply: Reply) -> bytes:
        return sse(self._base("chat.completion.chunk") | {"choices": [], "usage": reply.usage})


class ChatCompletions:
    """ASGI endpoint; the recorder middleware put this request's `Exchange` in the scope."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange: Exchange = scope[SCOPE_KEY]
        behaviour = exchange.behaviour
        if behaviour.content_type is not None:
            send = _with_content_type(send, behaviour.content_type)
        if behaviour.hang:
            if await exchange.pause(HANG_LIMIT):
                await openai_error(504, "The fake LLM hung as long as it may.")(
                    scope, receive, send
                )
            return
        if not await exchange.pause(behaviour.first_token_delay):
            return
        if behaviour.status is not None or behaviour.retry_after is not None:
            status = behaviour.status or 429
            message = f"The fake LLM was told to answer {status}."
            response = openai_error(status, message, retry_after=behaviour.retry_after)
            await response(scope, receive, send)
            return
        payload = exchange.payload
        streaming = isinstance(payload, dict) and payload.get("stream") is True
        if behaviour.malformed:
            await _malformed(send, streaming)
            return
        problem = validate(payload)
        if problem is not None:
            await openai_error(400, problem)(scope, receive, send)
            return
        reply = compose(payload, behaviour)
        completion = Completion(
            id=f"chatcmpl-fake-{exchange.record.id}",
            model=payload["model"],
            created=int(time.time()),
        )
        if streaming:
            options = payload.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            await _stream(exchange, behaviour, reply, completion, usage, send)
        else:
            await _whole(exchange, behaviour, reply, completion, scope, receive, send)


def _with_content_type(send: Send, content_type: str) -> Send:
    """`send`, but the response start carries `content_type` instead of its own."""
    value = content_type.encode("latin-1")

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, v) for k, v in message.get("headers", []) if k.lower() != b"content-type"
            ]
            message = {**message, "headers": [*headers, (b"content-type", value)]}
        await send(message)

    return sending


async def _malformed(send: Send, streaming: bool) -> None:
    if streaming:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": MALFORMED_EVENT, "more_body": True})
        await send({"type": "http.response.body", "body": DONE, "more_body": False})
        return
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(MALFORMED_JSON)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": MALFORMED_JSON, "more_body": False})


def _fails_at(behaviour: Behaviour, position: int) -> bool:
    return behaviour.fail_after is not None and behaviour.fail_after == position


async def _stream(
    exchange: Exchange,
    behaviour: Behaviour,
    reply: Reply,
    completion: Completion,
    include_usage: bool,
    send: Send,
) -> None:
    """Send one chunk per token; position `len(tokens)` is the moment before the finish."""
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    tokens = reply.tokens
    for position in range(len(tokens) + 1):
        if behaviour.hold_after == position and not await exchange.hold(HOLD_LIMIT):
            return
        if _fails_at(behaviour, position):
            if behaviour.fail_mode == "error_event":
                error = {
                    "message": f"The fake LLM failed after {position} tokens.",
                    "type": "server_error",
                }
                await send(
                    {
                        "type": "http.response.body",
                        "body": sse({"error": error}),
                        "more_body": False,
                    }
                )
            # "drop": return without finishing; uvicorn closes the socket mid-body.
            return
        if position == len(tokens):
            break
        if position > 0 and not await exchange.pause(behaviour.token_delay):
            return
        if exchange.disconnected.is_set():
            return
        delta = {"content": tokens[position]}
        if position == 0:
            delta = {"role": "assistant"} | delta
        await send(
            {"type": "http.response.body", "body": completion.chunk(delta), "more_body": True}
        )
    tail = [completion.chunk({}, finish_reason="stop")]
    if not tokens:
        tail.insert(0, completion.chunk({"role": "assistant", "content": ""}))
    if include_usage:
        tail.append(completion.usage_chunk(reply))
    for chunk in tail:
        if exchange.disconnected.is_set():
            return
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": DONE, "more_body": False})


async def _whole(
    exchange: Exchange,
    behaviour: Behaviour,
    reply: Reply,
    completion: Completion,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Answer in one JSON body; `hold_after` holds it, `fail_after` breaks it."""
    if behaviour.hold_after is not None and not await exchange.hold(HOLD_LIMIT):
        return
    body = json.dumps(completion.whole(reply), ensure_ascii=False).encode()
    if behaviour.fail_after is not None and behaviour.fail_after <= len(reply.tokens):
        if behaviour.fail_mode == "error_event":
            await openai_error(500, "The fake LLM failed as told.")(scope, receive, send)
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        return  # uvicorn closes the socket before the promised length arrived.
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
