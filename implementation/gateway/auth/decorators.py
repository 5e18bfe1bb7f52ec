"""Small view decorators for the JSON API.

``api_view`` answers wrong methods with 405 and anonymous users with 401 as
problem+json (never a login redirect), a session it cannot read now (the
database's pool is full or the database away) with 503, and turns ProblemError
into its response. ``csrf_protect_raw_body`` CSRF-checks a view whose body must stay
unread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.db import OperationalError
from django.http import HttpRequest, HttpResponseBase, QueryDict
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from gateway.problems import ProblemError, problem

View = Callable[..., Any]
logger = logging.getLogger(__name__)


def method_not_allowed(allowed: Sequence[str]) -> HttpResponseBase:
    return problem(
        405,
        f"Use {', '.join(allowed)} on this endpoint.",
        headers={"Allow": ", ".join(allowed)},
    )


def unauthorized() -> HttpResponseBase:
    return problem(401, "Log in first.")


def database_unavailable(exc: OperationalError) -> HttpResponseBase:
    """503 when the session or user cannot be read now: a full pool or an unreachable database.

    An overload that passes (a burst queued on the connection pool) is not a bug of
    ours: the client may retry, and a 500 would say otherwise.
    """
    logger.warning("database unavailable while checking the session: %s", exc)
    return problem(
        503, "The user database is busy or unreachable: try again.", headers={"Retry-After": "1"}
    )


def api_view(*, methods: Sequence[str], login: bool = False) -> Callable[[View], View]:
    """Guard a view (async or sync) by method and, with ``login``, by session."""
    allowed = tuple(method.upper() for method in methods)

    def decorator(view: View) -> View:
        if iscoroutinefunction(view):

            @wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if request.method not in allowed:
                    return method_not_allowed(allowed)
                try:
                    if login and not (await request.auser()).is_authenticated:  # type: ignore[attr-defined]
                        return unauthorized()
                    return await view(request, *args, **kwargs)
                except ProblemError as exc:
                    return exc.response()
                except OperationalError as exc:
                    return database_unavailable(exc)

            return async_wrapper

        @wraps(view)
        def sync_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if request.method not in allowed:
                return method_not_allowed(allowed)
            try:
                if login and not request.user.is_authenticated:  # type: ignore[attr-defined]
                    return unauthorized()
                return view(request, *args, **kwargs)
            except ProblemError as exc:
                return exc.response()
            except OperationalError as exc:
                return database_unavailable(exc)

        return sync_wrapper

    return decorator


def csrf_protect_raw_body(view: View) -> View:
    """CSRF-check from the X-CSRFToken header only, leaving the body unread.

    CsrfViewMiddleware looks for the token in ``request.POST`` first, which
    parses (and consumes) a multipart body. The upload view forwards that body
    raw, so it is exempted from the middleware and runs the same check here
    with an empty POST: the header is then the only place the token can be.
    """
    protected = csrf_protect(view)

    @wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if request.method == "POST":
            request.POST = QueryDict()  # type: ignore[misc]
        return await protected(request, *args, **kwargs)

    return csrf_exempt(wrapper)
