"""Health probe and the problem+json versions of Django's error views."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from gateway.auth.decorators import api_view
from gateway.problems import problem


@api_view(methods=["GET"])
async def health(request: HttpRequest) -> HttpResponseBase:
    """The seed's liveness probe: touches neither the database nor the service (see
    gateway/lifecycle/probes.py for /healthz and /readyz)."""
    return JsonResponse({"status": "ok"})


async def api_not_found(request: HttpRequest, path: str = "") -> HttpResponseBase:
    """Any unknown /api/ path, so it stays problem+json even with DEBUG on."""
    return problem(404, "No such API endpoint.")


#: A catch-all: the request log and metrics name what it answers "unmatched", never its path.
api_not_found.matches_any_path = True  # type: ignore[attr-defined]


# Error handlers: Django calls these synchronously (in a worker thread under ASGI).


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponseBase:
    if isinstance(exception, RequestDataTooBig):
        return problem(413, "The request body is too large.")
    return problem(400, "The request could not be understood.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponseBase:
    return problem(403, "You may not do this.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponseBase:
    return problem(404, "Not found.")


def server_error(request: HttpRequest) -> HttpResponseBase:
    return problem(500, "The gateway failed to handle the request.")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponseBase:
    """CSRF_FAILURE_VIEW: a 403 problem; send the csrftoken cookie's value in X-CSRFToken."""
    return problem(403, f"CSRF verification failed: {reason}".strip())
