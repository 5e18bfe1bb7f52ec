"""Default answers of the service routes, deterministic and derived from the request.

Bodies are read leniently (this is a fake): anything that is not the expected shape
just yields empty text, never an error, so gateway tests can send odd bodies through.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import Message, Scope

STREAM_PATH = "/chatbot/stream/"
MAX_QUESTIONS = 100
DEFAULT_QUESTIONS = 3


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``{}`` when it is anything else."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def text_of(value: Any) -> str:
    """A field as text: strings as they are, other JSON compact, missing as ``""``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def count_words(text: str) -> int:
    return len(text.split())


def usage(prompt: str, completion: str | int) -> dict[str, int]:
    """Deterministic token counts: words in, words (or events) out."""
    prompt_tokens = count_words(prompt)
    completion_tokens = completion if isinstance(completion, int) else count_words(completion)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def prompt_text(data: dict[str, Any]) -> str:
    """Everything the caller sent for the model to read: history then message."""
    parts: list[str] = []
    history = data.get("history")
    if isinstance(history, list):
        parts.extend(text_of(turn.get("content")) for turn in history if isinstance(turn, dict))
    parts.append(text_of(data.get("message")))
    return " ".join(parts)


async def health(scope: Scope, body: bytes) -> dict[str, Any]:
    return {"status": "ok"}


async def chat(scope: Scope, body: bytes) -> dict[str, Any]:
    data = json_object(body)
    reply = f"echo: {text_of(data.get('message'))}"
    return {"reply": reply, "usage": usage(prompt_text(data), reply)}


async def file_chat(scope: Scope, body: bytes) -> dict[str, Any]:
    filename, content, message = await _read_upload(scope, body)
    digest = hashlib.sha256(content).hexdigest()
    reply = f"file {filename} {len(content)} bytes sha256 {digest}: {message}"
    return {"reply": reply, "usage": usage(message, reply)}


async def quiz(scope: Scope, body: bytes) -> dict[str, Any]:
    data = json_object(body)
    topic = text_of(data.get("topic"))
    difficulty = text_of(data.get("difficulty"))
    wanted = data.get("num_questions")
    if isinstance(wanted, bool) or not isinstance(wanted, int):
        wanted = DEFAULT_QUESTIONS
    count = max(0, min(wanted, MAX_QUESTIONS))
    questions = [
        {
            "question": f"Question {n + 1} about {topic} ({difficulty})?",
            "options": [f"Option {letter} of question {n + 1}" for letter in "ABCD"],
            "answer_index": n % 4,
            "explanation": f"Option {'ABCD'[n % 4]} is right for question {n + 1}.",
        }
        for n in range(count)
    ]
    return {"topic": topic, "questions": questions}


async def _read_upload(scope: Scope, body: bytes) -> tuple[str, bytes, str]:
    """``(filename, content, message)`` of a multipart body, empty parts when absent."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request(scope, replay)
    try:
        form = await request.form()
    except Exception:  # any malformed multipart just means "no fields" here
        return "", b"", ""
    try:
        upload = form.get("file")
        message = form.get("message")
        filename, content = "", b""
        if upload is not None and not isinstance(upload, str):
            filename = upload.filename or ""
            content = await upload.read()
        return filename, content, message if isinstance(message, str) else ""
    finally:
        await form.close()


Handler = Callable[[Scope, bytes], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Route:
    method: str
    handler: Handler
    streams: bool = False


ROUTES: dict[str, Route] = {
    "/health": Route("GET", health),
    "/chatbot/": Route("POST", chat),
    STREAM_PATH: Route("POST", chat, streams=True),
    "/chatbot/file/": Route("POST", file_chat),
    "/quiz/": Route("POST", quiz),
}
