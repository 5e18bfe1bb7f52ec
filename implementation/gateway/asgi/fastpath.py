"""An ASGI fast path in front of Django: the happy path of the proxy routes, on the event loop.

A ``POST`` to a route the route table serves on the fast path is admitted by
Django's own code (the request, the middleware's request half, the session,
the view's body checks), then goes through the views' ``forward()``; any
request admission refuses goes to Django unchanged, which answers it.
README.md, "Performance: the gateway fast path", gives the design and its cost.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.exception import response_for_exception
from django.http import HttpResponseBase
from django.http.multipartparser import MultiPartParserError
from django.urls import Resolver404, resolve
from django.utils.log import log_response

from gateway.asgi.middleware_plan import (
    MiddlewarePlan,
    Unsupported,
    View,
    raw_body_csrf_admits,
    raw_body_csrf_response,
)
from gateway.asgi.request_body import BodyReceiver, drop_rest, read_body, replay, spool_body
from gateway.asgi.responses import send_response, until_disconnect
from gateway.asgi.types import ASGIApp, Receive, Scope, Send
from gateway.auth.session_users import SessionUsers, session_users
from gateway.limits import Admission, admit
from gateway.problems import ProblemError
from gateway.proxy.bodies import (
    JSON,
    OutgoingBody,
    UploadSpool,
    check_upload_headers,
    read_json_object,
)
from gateway.proxy.forward import forward
from gateway.request_id import REQUEST_ID_HEADER, resolve_request_id
from gateway.routes import Kind, ProxyRoute, served

logger = logging.getLogger(__name__)

# What admission raises when Django would refuse the request with a 4xx of its
# own: handed to Django silently, like a refusal returned. Anything else is a
# fault of the fast path's (FastPath._fell_back).
REFUSALS: tuple[type[Exception], ...] = (
    # The views' own 415/413/400 (read_json_object, check_upload_headers, UploadSpool).
    ProblemError,
    # Django's 400s: DisallowedHost from get_host() (CommonMiddleware, the CSRF
    # origin check); RequestDataTooBig, TooManyFieldsSent from request.POST,
    # which the CSRF check reads on a JSON route.
    SuspiciousOperation,
    PermissionDenied,  # 403: CommonMiddleware's DISALLOWED_USER_AGENTS
    BadRequest,  # 400: request.POST of a form body declared in another charset than UTF-8
    MultiPartParserError,  # 400: request.POST of a malformed multipart body on a JSON route
)
# And a UnicodeDecodeError while the request is built (an undecodable query
# string), which Django's ASGIHandler.create_request answers with 400.

_REQUEST_ID = REQUEST_ID_HEADER.lower().encode("ascii")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Admitted(Generic[T]):
    """A request the fast path serves, for its user, and what its kind's check made of its body."""

    request: ASGIRequest
    user_id: Any
    body: T  # a JSON route's body to forward, or the empty spool an upload's body goes into
    admission: Admission  # the user's limits passed: its stream slot, or a 429 to send

    def release(self) -> None:
        """Give back the stream slot, if any (idempotent: the relay may have already)."""
        slot = self.admission[1]
        if slot is not None:
            slot.release()


class FastPath:
    """ASGI middleware: serve the proxy routes' happy path, pass everything else on.

    ``fallbacks`` counts, by kind (``"<step>:<exception type>"``), the requests
    handed to Django because admission raised an exception it did not expect;
    the first of each kind is logged with its traceback. There is one FastPath
    per process (lamla/asgi.py).
    """

    def __init__(self, app: ASGIApp, *, sessions: SessionUsers | None = None) -> None:
        self.app = app
        self.sessions = sessions or session_users
        self.max_body = settings.MAX_JSON_BODY
        self.max_upload = settings.MAX_UPLOAD_SIZE + settings.MULTIPART_OVERHEAD
        self.fallbacks: Counter[str] = Counter()
        self._routes = {route.path: route for route in served() if route.fast_path}
        self._views: dict[str, View | None] = {}
        try:
            self.plan: MiddlewarePlan | None = MiddlewarePlan(settings.MIDDLEWARE)
        except Unsupported as exc:
            logger.warning("GATEWAY_FAST_PATH is on but stays unused: %s", exc)
            self.plan = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.plan is None
            or scope["type"] != "http"
            or scope["method"] != "POST"
            or scope.get("root_path")
            or settings.FORCE_SCRIPT_NAME
            or (target := self._target(scope["path"])) is None
        ):
            await self.app(scope, receive, send)
            return
        await self._serve(self.plan, *target, scope, receive, send)

    def _target(self, path: str) -> tuple[View, ProxyRoute] | None:
        """The view and route of a fast-path route at ``path``.

        Only when Django's URLconf resolves the path to that route's own proxy
        view (apps/core/proxy_views.py): a project that routes it elsewhere
        keeps its view.
        """
        route = self._routes.get(path)
        if route is None:
            return None
        if path not in self._views:
            try:
                view = resolve(path).func
            except Resolver404:
                view = None
            if getattr(view, "proxy_route", None) != route:
                view = None
            self._views[path] = view
        view = self._views[path]
        return None if view is None else (view, route)

    async def _serve(
        self,
        plan: MiddlewarePlan,
        view: View,
        route: ProxyRoute,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if route.kind is Kind.UPLOAD:
            await self._serve_upload(plan, view, route, scope, receive, send)
            return
        read = await read_body(scope, receive, limit=self.max_body)
        if read is None:
            return  # the client left before its body arrived (Django does the same)
        body, complete = read
        admitted = (
            await self._admit(plan, view, route, scope, body, _json_body) if complete else scope
        )
        if not isinstance(admitted, Admitted):
            await self.app(admitted, replay(body, complete, receive), send)
            return
        try:
            await until_disconnect(self._respond(plan, admitted, route, send), receive)
        finally:
            admitted.release()  # also when the exchange was cancelled before it began

    async def _serve_upload(
        self,
        plan: MiddlewarePlan,
        view: View,
        route: ProxyRoute,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        admitted = await self._admit(plan, view, route, scope, b"", _upload_spool)
        if not isinstance(admitted, Admitted):
            await self.app(admitted, receive, send)  # not a byte of the body read
            return
        request, spool = admitted.request, admitted.body
        incoming = BodyReceiver(receive)
        try:
            try:
                if not await spool_body(spool, incoming):
                    return  # the client left before its body arrived
                body = spool.finish(request.META["CONTENT_TYPE"])
            except ProblemError as exc:
                spool.close()
                response = exc.response()
                if not await drop_rest(incoming, limit=self.max_upload):
                    response["Connection"] = "close"  # the rest stays unread
                await self._send(plan, request, response, send)
                return
            exchange = self._respond(plan, replace(admitted, body=body), route, send)
            await until_disconnect(exchange, receive)
        finally:
            admitted.release()
            spool.close()

    async def _admit(
        self,
        plan: MiddlewarePlan,
        view: View,
        route: ProxyRoute,
        scope: Scope,
        body: bytes,
        check: Callable[[ASGIRequest], T | None],
    ) -> Admitted[T] | Scope:
        """Admission, one for every kind of route: the admitted request, or a scope for Django.

        The request is built as Django's handler builds it, the middleware's
        request half runs, the session must name a user, then ``check``, the
        route kind's own step, returns what carries the body on (None
        refuses), then the user's limits (gateway/limits.py), which also
        confirm that the cached session was not revoked on another worker. A
        refusal hands ``scope`` to Django as it is; so does an unexpected
        exception, counted and logged (``_fell_back``).
        """
        step = "request"
        try:
            request = _build_request(scope, body)
            if request is None:
                return scope
            step = "middleware"
            if not plan.admits(request, view):
                return scope
            step = "session"
            session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
            user_id = await self.sessions.user_id(session_key) if session_key else None
            if user_id is None:
                return scope  # anonymous, as far as the fast path knows
            step = "body"
            checked = check(request)
            if checked is None:
                return scope
            step = "limits"
            admission = await admit(route, user_id, session_key=session_key)
            if admission is None:  # revoked elsewhere, or unsure while Redis is away
                self.sessions.evict(session_key)
                return scope
        except REFUSALS:
            return scope
        except Exception as exc:
            return self._fell_back(scope, step, exc)
        return Admitted(request, user_id, checked, admission)

    def _fell_back(self, scope: Scope, step: str, exc: Exception) -> Scope:
        """Count an unexpected exception in admission, log the first of its kind, hand over.

        The request id logged is the one Django's answer carries: the scope
        handed to Django holds it (one minted here if the client sent none).
        """
        kind = f"{step}:{type(exc).__qualname__}"
        self.fallbacks[kind] += 1
        request_id, scope = _with_request_id(scope)
        if self.fallbacks[kind] == 1:
            logger.exception(
                "fast path: unexpected %s in admission (%s) of %s %s, handed to Django "
                "(request %s); further ones are counted in fallbacks[%r], not logged",
                type(exc).__qualname__,
                step,
                scope["method"],
                scope["path"],
                request_id,
                kind,
                exc_info=exc,
            )
        return scope

    async def _respond(
        self,
        plan: MiddlewarePlan,
        admitted: Admitted[OutgoingBody],
        route: ProxyRoute,
        send: Send,
    ) -> None:
        request = admitted.request
        try:
            response = await forward(
                request,
                route,
                user_id=admitted.user_id,
                body=admitted.body,
                admission=admitted.admission,
            )
        except Exception as exc:
            # What Django does with an exception a view raises: handler500 (logged).
            response = response_for_exception(request, exc)
        await self._send(plan, request, response, send)

    async def _send(
        self, plan: MiddlewarePlan, request: ASGIRequest, response: HttpResponseBase, send: Send
    ) -> None:
        """The response half of the middleware, Django's log line for an error, then send."""
        # The response half of the upload view's csrf_protect; it does nothing
        # unless the request asked for a new CSRF cookie.
        raw_body_csrf_response(request, response)
        plan.finish(request, response)
        if response.status_code >= 400:
            log_response(
                "%s: %s",
                response.reason_phrase,
                request.path,
                response=response,
                request=request,
            )
        await send_response(response, send)


def _build_request(scope: Scope, body: bytes) -> ASGIRequest | None:
    """The request as Django's handler builds it, or None where the handler answers 400 itself."""
    try:
        return ASGIRequest(scope, io.BytesIO(body))
    except UnicodeDecodeError:  # an undecodable query string (ASGIHandler.create_request)
        return None


def _json_body(request: ASGIRequest) -> OutgoingBody:
    """A JSON route's step: its body, checked as its view checks it (415/413/400 are Django's)."""
    raw, _ = read_json_object(request)
    return OutgoingBody(raw, JSON)


def _upload_spool(request: ASGIRequest) -> UploadSpool | None:
    """An upload's step, on its headers alone: an empty spool for its body, None to refuse.

    As the upload view: ``csrf_protect_raw_body``, then ``check_upload_headers``.
    """
    if not raw_body_csrf_admits(request):
        return None
    return UploadSpool(check_upload_headers(request))


def _with_request_id(scope: Scope) -> tuple[str, Scope]:
    """The request id Django will use (the client's, if well formed) and a scope that carries it.

    Django's RequestIdMiddleware keeps a well-formed id and mints another
    one otherwise; minted here, it must reach Django for the two to agree.
    """
    sent = [value for name, value in scope["headers"] if name.lower() == _REQUEST_ID]
    # As request.headers reads them: latin-1, repeated headers joined by commas.
    request_id = resolve_request_id(b",".join(sent).decode("latin-1") if sent else None)
    if sent == [request_id.encode("ascii")]:
        return request_id, scope
    headers = [(name, value) for name, value in scope["headers"] if name.lower() != _REQUEST_ID]
    return request_id, {**scope, "headers": [*headers, (_REQUEST_ID, request_id.encode("ascii"))]}
