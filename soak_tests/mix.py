"""The request kinds of the soak mix: what each sends and what it must get back.

The expectation of a request is fixed by its kind before it is sent; :func:`judge`
compares the answer with it. Paths and bodies come from spec/ (``harness.spec``: the
operation's example body with the request's token in it). Fault kinds carry a token
that selects one of the behaviours registered once on the fake service
(:data:`BEHAVIOURS`), so the fake's behaviour registry stays at a constant size for the
whole run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.client import parse_stream
from harness.loadgen import Response, build_request
from harness.spec import ProxiedRoute, proxied_routes, route

JSON = "application/json"
PROBLEM = "application/problem+json"
EVENT_STREAM = "text/event-stream"

CHAT = route("chat")
STREAM = route("chat_stream")
UPLOAD = route("chat_file")
QUIZ = route("quiz_generate")

#: Match tokens of the fake-service behaviours; unlikely to occur in any other body.
FAIL_MATCH = "soak-fault-status500-7f3c"
DROP_MATCH = "soak-fault-drop1-91ab"
HANG_MATCH = "soak-fault-hang-c40e"
LONG_MATCH = "soak-long-stream-5d21"

#: Registered on the fake service before the run (no ``times``: they apply to every match).
BEHAVIOURS: dict[str, dict[str, object]] = {
    FAIL_MATCH: {"status": 500},
    DROP_MATCH: {"drop_after": 1, "events": 5},
    HANG_MATCH: {"hang": True},
    # Long enough (40 x 50 ms) that the client is still reading when it leaves.
    LONG_MATCH: {"events": 40, "interval": 0.05},
}

#: Every request but a hang must be answered within this many seconds (queueing included:
#: on two shared cores a p99 of 2-4 s was seen at 200 clients).
REQUEST_DEADLINE = 10.0


@dataclass(frozen=True)
class Planned:
    """One request about to be sent: its bytes and what must come back."""

    kind: str
    raw: bytes
    expect_status: int
    deadline: float
    #: Stream kinds: "done" (read to the end), "error" (ends in event: error),
    #: "abort" (the client leaves after the first event); None for plain answers.
    stream: str | None = None
    #: Quiz kinds: how many questions were asked for.
    questions: int | None = None


@dataclass(frozen=True)
class Kind:
    name: str
    weight: int
    build: Callable[[Context, random.Random, str], Planned]


@dataclass(frozen=True)
class Context:
    """Where requests go and the session they carry."""

    host: str
    port: int
    headers: tuple[tuple[str, str], ...]
    read_timeout: float

    def post(self, proxied: ProxiedRoute, token: str) -> bytes:
        """The request bytes of ``proxied`` with its example body carrying ``token``."""
        body, content_type = proxied.encode(token)
        headers = (("Content-Type", content_type), *self.headers)
        host = f"{self.host}:{self.port}"
        return build_request(proxied.method, proxied.path, host=host, headers=headers, body=body)


def _chat(ctx: Context, rng: random.Random, tag: str) -> Planned:
    return Planned("chat", ctx.post(CHAT, tag), 200, REQUEST_DEADLINE)


def _stream(ctx: Context, rng: random.Random, tag: str) -> Planned:
    return Planned("stream", ctx.post(STREAM, tag), 200, REQUEST_DEADLINE, stream="done")


def _upload(ctx: Context, rng: random.Random, tag: str) -> Planned:
    return Planned("upload", ctx.post(UPLOAD, tag), 200, REQUEST_DEADLINE)


def _quiz(ctx: Context, rng: random.Random, tag: str) -> Planned:
    asked = QUIZ.payload(tag)["json"]["num_questions"]
    return Planned("quiz", ctx.post(QUIZ, tag), 200, REQUEST_DEADLINE, questions=asked)


def _abort(ctx: Context, rng: random.Random, tag: str) -> Planned:
    raw = ctx.post(STREAM, f"{LONG_MATCH} {tag}")
    return Planned("abort", raw, 200, REQUEST_DEADLINE, stream="abort")


def _fail(ctx: Context, rng: random.Random, tag: str) -> Planned:
    """The service answers 500 on a random proxied route: the gateway must say 502."""
    raw = ctx.post(rng.choice(proxied_routes()), f"{FAIL_MATCH} {tag}")
    return Planned("fault_500", raw, 502, REQUEST_DEADLINE)


def _drop(ctx: Context, rng: random.Random, tag: str) -> Planned:
    """The service drops the connection after one event: the stream must end in error."""
    raw = ctx.post(STREAM, f"{DROP_MATCH} {tag}")
    return Planned("fault_drop", raw, 200, REQUEST_DEADLINE, stream="error")


def _hang(ctx: Context, rng: random.Random, tag: str) -> Planned:
    """The service never answers: the gateway must say 504 at its read timeout."""
    raw = ctx.post(rng.choice((CHAT, STREAM)), f"{HANG_MATCH} {tag}")
    return Planned("fault_hang", raw, 504, hang_deadline(ctx.read_timeout))


#: The weighted mix (weights are relative).
KINDS: tuple[Kind, ...] = (
    Kind("chat", 30, _chat),
    Kind("stream", 25, _stream),
    Kind("upload", 10, _upload),
    Kind("quiz", 10, _quiz),
    Kind("abort", 10, _abort),
    Kind("fault_500", 7, _fail),
    Kind("fault_drop", 5, _drop),
    Kind("fault_hang", 3, _hang),
)


def hang_deadline(read_timeout: float) -> float:
    """A hang is answered at the gateway's read timeout, counted from when the gateway sends
    it upstream; before that it may queue like any other request (REQUEST_DEADLINE)."""
    return read_timeout + REQUEST_DEADLINE


def longest_deadline(read_timeout: float) -> float:
    """The longest any single request of the mix may take."""
    return max(REQUEST_DEADLINE, hang_deadline(read_timeout))


def pick(rng: random.Random, kinds: Sequence[Kind] = KINDS) -> Kind:
    return rng.choices(kinds, weights=[k.weight for k in kinds])[0]


def content_type(response: Response) -> str:
    value = response.header("content-type") or b""
    return value.decode("latin-1").split(";")[0].strip().lower()


def judge(planned: Planned, response: Response) -> str | None:
    """None when ``response`` is what ``planned`` expects, else why not (one line)."""
    if response.status != planned.expect_status:
        return f"status {response.status}, expected {planned.expect_status}"
    ctype = content_type(response)
    if response.status >= 400:
        return _judge_problem(response, ctype)
    if planned.stream is None:
        if ctype != JSON:
            return f"content type {ctype!r}, expected {JSON}"
        return _judge_json(planned, response.body)
    if ctype != EVENT_STREAM:
        return f"content type {ctype!r}, expected {EVENT_STREAM}"
    return _judge_stream(planned.stream, response.body)


def _judge_problem(response: Response, ctype: str) -> str | None:
    if ctype != PROBLEM:
        return f"error {response.status} with content type {ctype!r}"
    try:
        body = json.loads(response.body)
    except ValueError:
        return f"error {response.status} body is not JSON"
    if not isinstance(body, dict) or body.get("status") != response.status:
        return f"error {response.status} problem body {str(body)[:120]}"
    return None


def _judge_json(planned: Planned, body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return "body is not JSON"
    if planned.questions is not None:
        questions = data.get("questions") if isinstance(data, dict) else None
        if not isinstance(questions, list) or len(questions) != planned.questions:
            return f"quiz without {planned.questions} questions"
    elif not isinstance(data, dict) or not isinstance(data.get("reply"), str):
        return "answer without a reply"
    return None


def _judge_stream(ending: str, body: bytes) -> str | None:
    try:
        events, pending = parse_stream(body)
    except UnicodeDecodeError:
        return "stream is not UTF-8"
    names = [e.event for e in events]
    if ending == "abort":
        return None if names[:1] == ["token"] else f"aborted stream began with {names[:1]}"
    if pending.strip():
        return f"stream ended inside an event: {pending[:80]!r}"
    if not names or any(n != "token" for n in names[:-1]):
        return f"stream events {names[:12]}"
    if names[-1] != ending:
        return f"stream ended with {names[-1]!r}, expected {ending!r}"
    return None
