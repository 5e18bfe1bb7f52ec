"""Behaviours: what the fake does instead of its default answer.

A test registers a behaviour under a ``match`` token; a request whose raw body contains
the token gets that behaviour. The control API validates behaviours strictly (a typo in
a test should fail loudly) even though the service routes themselves accept anything.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

# Upper bounds keep every loop and wait of a behaviour bounded in count and time.
MAX_DELAY = 300.0
MAX_INTERVAL = 60.0
MAX_EVENTS = 100_000
MAX_EVENT_SIZE = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024**3
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_TIMES = 1_000_000
DEFAULT_CHUNK_SIZE = 64 * 1024

# The characters uvicorn refuses in header names and values (it would raise mid-response).
_BAD_HEADER_NAME = re.compile(r'[\x00-\x1f\x7f()<>@,;:\[\]={} \t\\"]')
_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# These would break the message framing uvicorn computes, so they are refused.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})


class BehaviourError(ValueError):
    """A behaviour the control API refuses (answered with 422)."""


@dataclass(frozen=True)
class Behaviour:
    """One registered behaviour; field meanings are in fakes/service/__init__.py."""

    match: str
    times: int | None = None
    status: int | None = None
    body: Any = None
    content_type: str | None = None
    reply: dict[str, Any] | None = None
    delay: float = 0.0
    close: bool = False
    hang: bool = False
    malformed: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    stream: bool | None = None
    events: int = 3
    interval: float = 0.0
    event_size: int | None = None
    hold_after: int | None = None
    drop_after: int | None = None
    partial_after: int | None = None
    error_after: int | None = None
    total_bytes: int | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    done: bool = True

    @property
    def answers_plainly(self) -> bool:
        """True when the behaviour asks for a one-shot answer rather than a stream."""
        return (
            self.body is not None
            or self.reply is not None
            or self.malformed
            or (self.status is not None and self.status >= 400)
        )

    def streams_on(self, is_stream_route: bool) -> bool:
        """Whether this behaviour answers with an SSE stream on a route."""
        if self.stream is not None:
            return self.stream
        return is_stream_route and not self.answers_plainly

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["headers"] = [list(pair) for pair in self.headers]
        return data


def _int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BehaviourError(f"{name} must be an integer")
    if not low <= value <= high:
        raise BehaviourError(f"{name} must be between {low} and {high}")
    return value


def _float(name: str, value: Any, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BehaviourError(f"{name} must be a number")
    if not math.isfinite(value) or not 0 <= value <= high:
        raise BehaviourError(f"{name} must be between 0 and {high}")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BehaviourError(f"{name} must be a boolean")
    return value


def _content_type(value: Any) -> str:
    if not isinstance(value, str) or not value or _BAD_HEADER_VALUE.search(value):
        raise BehaviourError("content_type must be a non-empty header value")
    return value


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise BehaviourError("headers must be a list of [name, value] pairs")
    pairs: list[tuple[str, str]] = []
    for item in value:
        if not (
            isinstance(item, list | tuple)
            and len(item) == 2
            and all(isinstance(part, str) for part in item)
        ):
            raise BehaviourError("headers must be a list of [name, value] pairs")
        name, text = item
        if not name or _BAD_HEADER_NAME.search(name) or not name.isascii():
            raise BehaviourError(f"invalid header name {name!r}")
        if _BAD_HEADER_VALUE.search(text):
            raise BehaviourError(f"invalid value for header {name!r}")
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            raise BehaviourError(f"header {name!r} must be latin-1") from None
        if name.lower() in _FRAMING_HEADERS:
            raise BehaviourError(f"header {name!r} would break the response framing")
        pairs.append((name, text))
    return tuple(pairs)


def _count(name: str, value: Any) -> int:
    return _int(name, value, 0, MAX_EVENTS)


def _reply(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BehaviourError("reply must be a JSON object")
    return value


# How each accepted field is checked and converted.
_FIELDS: dict[str, Any] = {
    "times": lambda v: _int("times", v, 1, MAX_TIMES),
    "status": lambda v: _int("status", v, 200, 599),
    "body": lambda v: v,
    "content_type": _content_type,
    "reply": _reply,
    "delay": lambda v: _float("delay", v, MAX_DELAY),
    "close": lambda v: _bool("close", v),
    "hang": lambda v: _bool("hang", v),
    "malformed": lambda v: _bool("malformed", v),
    "headers": _headers,
    "stream": lambda v: _bool("stream", v),
    "events": lambda v: _count("events", v),
    "interval": lambda v: _float("interval", v, MAX_INTERVAL),
    "event_size": lambda v: _int("event_size", v, 1, MAX_EVENT_SIZE),
    "hold_after": lambda v: _count("hold_after", v),
    "drop_after": lambda v: _count("drop_after", v),
    "partial_after": lambda v: _count("partial_after", v),
    "error_after": lambda v: _count("error_after", v),
    "total_bytes": lambda v: _int("total_bytes", v, 0, MAX_TOTAL_BYTES),
    "chunk_size": lambda v: _int("chunk_size", v, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE),
    "done": lambda v: _bool("done", v),
}


def parse_behaviour(data: Any) -> Behaviour:
    """Validate a control-API body into a :class:`Behaviour`."""
    if not isinstance(data, dict):
        raise BehaviourError("a behaviour must be a JSON object")
    match = data.get("match")
    if not isinstance(match, str) or not match:
        raise BehaviourError("match must be a non-empty string")
    unknown = sorted(set(data) - set(_FIELDS) - {"match"})
    if unknown:
        raise BehaviourError(f"unknown behaviour fields: {', '.join(unknown)}")
    fields = {name: _FIELDS[name](value) for name, value in data.items() if name != "match"}
    # JSON null means "not given" for every optional field.
    fields = {name: value for name, value in fields.items() if value is not None}
    return Behaviour(match=match, **fields)


@dataclass
class _Entry:
    behaviour: Behaviour
    remaining: int | None


class BehaviourRegistry:
    """Registered behaviours, newest last; registering a token again replaces it."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def register(self, behaviour: Behaviour) -> None:
        self._entries = [e for e in self._entries if e.behaviour.match != behaviour.match]
        self._entries.append(_Entry(behaviour, behaviour.times))

    def select(self, body: bytes) -> tuple[str | None, Behaviour | None]:
        """The newest token found in ``body`` and its behaviour, if not used up.

        Consumes one use of ``times``. A used-up behaviour still names its token
        (so the request is recorded under it) but the default answer applies.
        """
        for entry in reversed(self._entries):
            if entry.behaviour.match.encode("utf-8") not in body:
                continue
            if entry.remaining is None:
                return entry.behaviour.match, entry.behaviour
            if entry.remaining > 0:
                entry.remaining -= 1
                return entry.behaviour.match, entry.behaviour
            return entry.behaviour.match, None
        return None, None

    def to_json(self) -> list[dict[str, Any]]:
        return [{**e.behaviour.to_json(), "remaining": e.remaining} for e in self._entries]

    def clear(self) -> None:
        self._entries.clear()
