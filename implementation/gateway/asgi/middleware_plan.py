"""Django's middleware, and the upload view's CSRF check, run the way the fast path runs them.

The request half decides whether the fast path may serve a request (any
refusal is left to Django, which answers and logs it); the response half is
applied to what the fast path answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, QueryDict
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.cache import patch_vary_headers

from gateway.request_id import REQUEST_ID_HEADER, get_request_id

View = Callable[..., Any]
RequestStep = Callable[[HttpRequest], HttpResponseBase | None]
ResponseStep = Callable[[HttpRequest, HttpResponseBase], object]


class Unsupported(Exception):
    """The settings ask for something the fast path cannot reproduce."""


def _never_called(request: HttpRequest) -> HttpResponseBase:
    raise AssertionError("the fast path only borrows the middleware's hooks")


class _CsrfCheck(CsrfViewMiddleware):
    """CsrfViewMiddleware's checks, with rejection left to Django.

    ``_reject`` would log and render the failure view; the fast path hands the
    request to Django instead, which rejects (and logs) it exactly once.
    """

    def _reject(self, request: HttpRequest, reason: str) -> HttpResponseBase:
        return _REJECTED


_REJECTED = HttpResponseBase(status=403)


class MiddlewarePlan:
    """The request and response halves of settings.MIDDLEWARE, as the fast path runs them.

    Every entry must be one this class knows; anything else raises
    ``Unsupported``, and the fast path stays off.
    """

    def __init__(self, middleware: Iterable[str]) -> None:
        self.request_steps: list[RequestStep] = []
        response_steps: list[ResponseStep] = []
        self.csrf: _CsrfCheck | None = None
        for path in middleware:
            request_step, response_step = self._steps(path)
            if request_step is not None:
                self.request_steps.append(request_step)
            if response_step is not None:
                response_steps.append(response_step)
        # Django applies response hooks from the innermost middleware outwards.
        self.response_steps = response_steps[::-1]

    def _steps(self, path: str) -> tuple[RequestStep | None, ResponseStep | None]:
        if path == "django.middleware.security.SecurityMiddleware":
            security = SecurityMiddleware(_never_called)
            return security.process_request, security.process_response
        if path == "corsheaders.middleware.CorsMiddleware":
            from corsheaders.middleware import CorsMiddleware

            return None, CorsMiddleware(_never_called).add_response_headers
        if path == "django.contrib.sessions.middleware.SessionMiddleware":
            if settings.SESSION_SAVE_EVERY_REQUEST:
                raise Unsupported("SESSION_SAVE_EVERY_REQUEST saves the session on every request")
            # The session was read (to find the user) and not changed.
            return None, _vary_on_cookie
        if path == "django.middleware.common.CommonMiddleware":
            common = CommonMiddleware(_never_called)
            return common.process_request, common.process_response
        if path == "django.middleware.csrf.CsrfViewMiddleware":
            self.csrf = _CsrfCheck(_never_called)
            return self.csrf.process_request, self.csrf.process_response
        if path == "django.contrib.auth.middleware.AuthenticationMiddleware":
            return None, None  # the fast path authenticates itself (session_users)
        if path == "gateway.request_id.RequestIdMiddleware":
            return None, _set_request_id
        if path == "django.middleware.clickjacking.XFrameOptionsMiddleware":
            return None, XFrameOptionsMiddleware(_never_called).process_response
        raise Unsupported(f"middleware {path} is not one it can reproduce")

    def admits(self, request: HttpRequest, view: View) -> bool:
        """True when every request hook and CSRF's view hook let the request through."""
        for step in self.request_steps:
            if step(request) is not None:
                return False
        if self.csrf is not None:
            if self.csrf.process_view(request, view, (), {}) is not None:
                return False
        elif not getattr(view, "csrf_exempt", False):
            return False  # no CSRF middleware: leave the decision to the view's decorators
        return True

    def finish(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        for step in self.response_steps:
            step(request, response)
        return response


def _vary_on_cookie(request: HttpRequest, response: HttpResponseBase) -> None:
    patch_vary_headers(response, ("Cookie",))


def _set_request_id(request: HttpRequest, response: HttpResponseBase) -> None:
    response[REQUEST_ID_HEADER] = get_request_id(request)


# ``csrf_protect_raw_body``'s check (gateway/auth/decorators.py): the upload
# view is exempt from the middleware and checks the X-CSRFToken header itself.
_RAW_BODY_CSRF = _CsrfCheck(_never_called)


def _csrf_protected_view(request: HttpRequest) -> HttpResponseBase:
    raise AssertionError("only passed to CsrfViewMiddleware.process_view")


def raw_body_csrf_admits(request: HttpRequest) -> bool:
    """True when ``csrf_protect_raw_body`` lets a request whose body stays unread through."""
    # As the decorator does: with an empty POST, the header is the only place for the token.
    request.POST = QueryDict()  # type: ignore[misc]
    return (
        _RAW_BODY_CSRF.process_request(request) is None
        and _RAW_BODY_CSRF.process_view(request, _csrf_protected_view, (), {}) is None
    )


def raw_body_csrf_response(request: HttpRequest, response: HttpResponseBase) -> None:
    """The response half of that check: a new CSRF cookie, if the request asked for one."""
    _RAW_BODY_CSRF.process_response(request, response)
