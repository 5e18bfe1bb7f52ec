"""The request in flight, as the layers that serve it come to know it.

``observe.Observe`` opens one per HTTP request and puts it in :data:`CURRENT`; code
below notes what only it knows (``note_user``, ``note_upstream``, ``note_stream_end``)
and does nothing when no exchange is open (a unit test, a management command).
Django runs sync code in threads with a copy of the context, which still holds the
same object, so a note made there is seen here.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Literal

StreamEnd = Literal["done", "error", "client_left", "drained"]
#: How the service failed the gateway (the metrics' ``kind``; pool exhaustion is its own).
UpstreamFailure = Literal["refused", "timeout", "broken", "bad_answer", "pool_exhausted"]
#: Which limit answered 429: a rate bucket (``ProxyRoute.bucket``) or the stream cap.
LimitBucket = str


@dataclass(slots=True)
class Exchange:
    method: str
    route: str
    started: float
    status: int | None = None
    request_id: str | None = None
    user_id: object = None
    upstream_status: int | None = None
    bytes_sent: int = 0
    first_byte: float | None = None
    finished: float | None = None
    stream_end: StreamEnd | None = None
    client_left: bool = False
    streaming: bool = False
    upstream_failure: UpstreamFailure | None = None
    limited: LimitBucket | None = None


CURRENT: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar(
    "gateway_exchange", default=None
)


def note_user(user_id: object) -> None:
    if (exchange := CURRENT.get()) is not None:
        exchange.user_id = user_id


def note_upstream(status: int) -> None:
    if (exchange := CURRENT.get()) is not None:
        exchange.upstream_status = status


def note_stream_end(end: StreamEnd) -> None:
    """How a relayed stream ended; the first note wins (a drain's cut is not a client's)."""
    if (exchange := CURRENT.get()) is not None and exchange.stream_end is None:
        exchange.stream_end = end


def note_upstream_failure(kind: UpstreamFailure) -> None:
    if (exchange := CURRENT.get()) is not None:
        exchange.upstream_failure = kind


def note_limited(bucket: LimitBucket) -> None:
    if (exchange := CURRENT.get()) is not None:
        exchange.limited = bucket
