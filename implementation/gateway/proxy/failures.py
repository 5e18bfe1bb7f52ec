"""How service failures become gateway answers (GW-PROXY-7).

| service side                                 | gateway answer                     |
|----------------------------------------------|------------------------------------|
| connection refused, protocol error           | 502                                |
| connect / read / write timeout               | 504                                |
| pool exhausted (PoolTimeout)                 | 503 + Retry-After                  |
| 5xx (or an unexpected 1xx/3xx)               | 502, generic detail                |
| 401 / 403 (our secret was refused)           | 502 + an error log line            |
| other 4xx                                    | same status, its problem relayed   |
| 2xx that is not JSON on a JSON route         | 502                                |

Details of service failures never reach the browser: they may hold internals.
"""

from __future__ import annotations

import json
import logging

import httpx
from django.http import HttpResponse, JsonResponse

from gateway.observability.exchange import UpstreamFailure, note_upstream_failure
from gateway.problems import PROBLEM_CONTENT_TYPE, normalize_problem, problem, problem_body
from gateway.proxy.headers import downstream_response_headers

logger = logging.getLogger(__name__)

# How much of a 4xx body the gateway reads to relay it.
MAX_ERROR_BODY = 64 * 1024


def relays_error_body(status: int) -> bool:
    """Whether the browser gets the service's own problem for ``status`` (so it is read).

    A 4xx is the caller's fault and its problem is relayed; a 401/403 means the
    gateway's own credentials were refused, and a 5xx may hold internals.
    """
    return 400 <= status < 500 and status not in (401, 403)


POOL_RETRY_AFTER = "1"


def failure_kind(exc: httpx.HTTPError) -> UpstreamFailure:
    """The metrics' name for ``exc`` (gateway_upstream_failures_total's ``kind``)."""
    if isinstance(exc, httpx.PoolTimeout):
        return "pool_exhausted"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "refused"
    return "broken"


def classify_transport_error(exc: httpx.HTTPError) -> tuple[int, str]:
    """(status, detail) for an httpx error raised while talking to the service."""
    if isinstance(exc, httpx.PoolTimeout):
        return 503, "The gateway has too many requests in flight to the AI service."
    if isinstance(exc, httpx.TimeoutException):
        return 504, "The AI service did not answer in time."
    return 502, "The AI service could not be reached."


def transport_failure(exc: httpx.HTTPError, *, path: str, request_id: str) -> JsonResponse:
    note_upstream_failure(failure_kind(exc))
    status, detail = classify_transport_error(exc)
    logger.warning(
        "service call %s failed: %s -> %s (request %s)",
        path,
        type(exc).__name__,
        status,
        request_id,
    )
    headers = {"Retry-After": POOL_RETRY_AFTER} if status == 503 else None
    return problem(status, detail, headers=headers)


def bad_upstream_answer(*, path: str, request_id: str, reason: str) -> JsonResponse:
    note_upstream_failure("bad_answer")
    logger.warning("service call %s: %s -> 502 (request %s)", path, reason, request_id)
    return problem(502, "The AI service sent an invalid answer.")


def upstream_error(
    response: httpx.Response, body: bytes | None, *, path: str, request_id: str
) -> HttpResponse:
    """Map a non-2xx service answer; ``body`` is its (bounded) body, if read."""
    status = response.status_code
    if not relays_error_body(status):
        note_upstream_failure("bad_answer")
    if status in (401, 403):
        # Never log the secret itself, only that the two sides disagree.
        logger.error(
            "service rejected X-Internal-Secret: SERVICE_SECRET does not match the "
            "service's secret (status %s on %s, request %s)",
            status,
            path,
            request_id,
        )
        return problem(502, "The gateway is not authorised by the AI service.")
    if not 400 <= status < 500:
        logger.warning("service call %s answered %s -> 502 (request %s)", path, status, request_id)
        return problem(502, "The AI service failed to answer.")
    data = _json_or_none(body)
    content_type = response.headers.get("content-type", "")
    payload = None
    if content_type.split(";")[0].strip().lower() == PROBLEM_CONTENT_TYPE:
        payload = normalize_problem(data, status)
    if payload is None:
        payload = _wrap(data, status)
    relayed = JsonResponse(payload, status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in downstream_response_headers(response.headers.multi_items()):
        if name != "content-type":
            relayed[name] = value
    return relayed


def _wrap(data: object, status: int) -> dict[str, object]:
    """A problem around a 4xx body that was not one (e.g. FastAPI's 422 shape)."""
    detail = "The AI service rejected the request."
    payload = problem_body(status, detail)
    if isinstance(data, dict):
        upstream_detail = data.get("detail")
        if isinstance(upstream_detail, str) and upstream_detail:
            payload["detail"] = upstream_detail[:1000]
        elif isinstance(upstream_detail, list):
            payload["errors"] = upstream_detail
    return payload


def _json_or_none(body: bytes | None) -> object:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
