"""The service's Prometheus metrics (OPS-METRICS-1, -5), named as the spec's table names them.

They live in prometheus-client's default registry, which ``deploy/metrics.py`` serves on a
port of its own (never the service's). Under gunicorn each worker writes them to
``PROMETHEUS_MULTIPROC_DIR`` instead, so the gauge says how to sum workers (``livesum``).

Every label value comes from a short closed list (OPS-METRICS-3), and the series of those
lists are created here up front: they are scraped as 0 before the first call, which is
what a rate() or an alert on them needs, and the hot paths only look children up.

An LLM call is counted once, by :class:`LLMCall`, however it ends:

- ``ok``: the LLM's answer is complete (its last token, or the whole JSON body);
- ``error``: the LLM failed, timed out, or answered something unusable (``LLMError``);
- ``cancelled``: the caller left, so the call was cancelled or its stream closed early.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Literal, get_args

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from fastapi_service.core.llm import Usage

Operation = Literal["chat", "stream", "quiz"]
Outcome = Literal["ok", "error", "cancelled"]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)

#: Requests include streams, which may run for minutes.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
LLM_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)

REQUESTS = Counter(
    "service_requests_total",
    "FastAPI requests by route and status.",
    ("route", "method", "status"),
)
REQUEST_DURATION = Histogram(
    "service_request_duration_seconds",
    "FastAPI response times, to the last byte.",
    ("route",),
    buckets=REQUEST_BUCKETS,
)
STREAMS_OPEN = Gauge(
    "service_streams_open",
    "Open streams at the service.",
    multiprocess_mode="livesum",
)
LLM_REQUESTS = Counter(
    "service_llm_requests_total",
    "LLM calls and how they ended.",
    ("operation", "outcome"),
)
LLM_DURATION = Histogram(
    "service_llm_duration_seconds",
    "LLM generation latency, to the last token (calls that ended ok).",
    ("operation",),
    buckets=LLM_BUCKETS,
)
LLM_TTFT = Histogram(
    "service_llm_ttft_seconds",
    "LLM time to first token of a stream.",
    buckets=TTFT_BUCKETS,
)
LLM_TOKENS = Counter(
    "service_llm_tokens_total",
    "Tokens the LLM reports it used.",
    ("kind",),
)

_CALLS = {(op, out): LLM_REQUESTS.labels(op, out) for op in OPERATIONS for out in OUTCOMES}
_DURATIONS = {op: LLM_DURATION.labels(op) for op in OPERATIONS}
_PROMPT_TOKENS = LLM_TOKENS.labels("prompt")
_COMPLETION_TOKENS = LLM_TOKENS.labels("completion")


def outcome_of(exc: BaseException | None) -> Outcome:
    """How an LLM call ended, from what ended it (None: nothing went wrong).

    A cancelled task (the caller left while we waited) and a closed generator (the
    stream's reader went away) are the caller's doing; anything else is the LLM's.
    """
    if exc is None:
        return "ok"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    return "error"


class LLMCall:
    """One LLM call, counted exactly once: by :meth:`finish`, or else when its block ends.

    ``with LLMCall("chat") as call: ...; call.finish(usage)``. Only calls that ended
    ``ok`` are timed (the duration is "to the last token"); a stream's first token is
    timed as it arrives, whatever happens after.
    """

    __slots__ = ("_counted", "_operation", "_started", "_waiting_first")

    def __init__(self, operation: Operation) -> None:
        self._operation = operation
        self._started = 0.0
        self._counted = False
        self._waiting_first = True

    def __enter__(self) -> LLMCall:
        self._started = perf_counter()
        return self

    def first_token(self) -> None:
        """A text delta of the stream arrived; the first one is its time to first token."""
        if self._waiting_first:
            self._waiting_first = False
            LLM_TTFT.observe(perf_counter() - self._started)

    def finish(self, usage: Usage | None = None) -> None:
        """The answer is complete: ok, its latency, and the tokens the LLM reported.

        Called before a stream hands over its last item, so a reader that leaves after
        the LLM finished does not turn a complete call into a cancelled one.
        """
        if self._counted:
            return
        self._counted = True
        _CALLS[self._operation, "ok"].inc()
        _DURATIONS[self._operation].observe(perf_counter() - self._started)
        if usage is not None:
            _PROMPT_TOKENS.inc(usage.prompt_tokens)
            _COMPLETION_TOKENS.inc(usage.completion_tokens)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._counted:
            return
        outcome = outcome_of(exc)
        if outcome == "ok":
            self.finish()
            return
        self._counted = True
        _CALLS[self._operation, outcome].inc()
