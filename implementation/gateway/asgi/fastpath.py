"""An ASGI fast path in front of Django for the happy path of the proxy routes.

Django's ASGI handler costs a thread per live request and several thread hops
per request (``request_started`` receivers, every ``MiddlewareMixin`` hook,
the session and user queries, ``response.close``): about 3 ms of CPU for a
small authenticated chat request, and 1,000 threads for 1,000 open streams.
This layer serves ``POST`` to a route whose view is marked with
``fast_path_route`` (apps/core/proxy_views.py) on the event loop instead,
with Django's own code for every decision:

- the request is a ``django.core.handlers.asgi.ASGIRequest``, built from the
  scope, so headers, cookies, ``get_host()`` and the request id read exactly
  as in a view;
- the request half of the configured middleware runs as Django runs it
  (SecurityMiddleware and CommonMiddleware checks, CsrfViewMiddleware's
  ``process_request``/``process_view``), then ``read_json_object``;
- the session is checked as ``django.contrib.auth.get_user`` checks it, with
  a short per-process cache (gateway/auth/session_users.py);
- an upload is admitted on its headers alone (the CSRF token must be in the
  header, as ``csrf_protect_raw_body`` requires; ``check_upload_headers``),
  then its body is checked and rebuilt into a spool chunk by chunk as it
  arrives (``UploadSpool``), with no thread at all: the spool's 413/415/400
  is the view's, and the rest of a refused body is read and dropped, as
  Django would have read it;
- the request goes through the same ``forward()`` as the views (which also
  applies the user's rate limit and stream slots, gateway/limits.py, with
  the in-process cache called without a thread hop), and the response half
  of the configured middleware (Vary, CORS, security headers, X-Request-ID,
  Content-Length) is applied to the response it returns, a 429 included.

Whenever any of that would not simply let the request through (anonymous,
bad CSRF, wrong content type, invalid or too large JSON, disallowed host...)
the request goes to Django unchanged, its already read body replayed (an
upload's body is not read before it is admitted), and Django gives the
canonical answer. Every other request never stops here.
The fast path turns itself off (and says so once in the log) when
MIDDLEWARE holds a middleware it does not know how to reproduce.

A client that disconnects cancels the request wherever it is (waiting for a
pooled connection, for the service's answer, or mid-stream), so the upstream
request is closed at once; uvicorn's ``send`` after a disconnect does nothing,
so a task listens for ``http.disconnect`` for the whole exchange.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest, HttpResponseBase, QueryDict
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, resolve
from django.utils.cache import patch_vary_headers
from django.utils.log import log_response

from gateway.auth.session_users import SessionUsers, session_users
from gateway.problems import ProblemError
from gateway.proxy.bodies import (
    JSON,
    OutgoingBody,
    UploadSpool,
    check_upload_headers,
    read_json_object,
)
from gateway.proxy.forward import forward
from gateway.request_id import REQUEST_ID_HEADER, get_request_id
from gateway.routes import Kind, ProxyRoute, served

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
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
# ``csrf_protect_raw_body``'s check (the upload view is exempt from the middleware).
_RAW_BODY_CSRF = _CsrfCheck(_never_called)


def _csrf_protected_view(request: HttpRequest) -> HttpResponseBase:
    raise AssertionError("only passed to CsrfViewMiddleware.process_view")


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


class FastPath:
    """ASGI middleware: serve the proxy routes' happy path, pass everything else on."""

    def __init__(self, app: ASGIApp, *, sessions: SessionUsers | None = None) -> None:
        self.app = app
        self.sessions = sessions or session_users
        self.max_body = settings.MAX_JSON_BODY
        self.max_upload = settings.MAX_UPLOAD_SIZE + settings.MULTIPART_OVERHEAD
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
        read = await self._read_body(scope, receive)
        if read is None:
            return  # the client left before its body arrived (Django does the same)
        body, complete = read
        admitted = await self._admit(plan, scope, body, view) if complete else None
        if admitted is None:
            await self.app(scope, _replay(body, complete, receive), send)
            return
        request, user_id = admitted
        outgoing = OutgoingBody(body, JSON)
        exchange = self._respond(plan, request, route, user_id, send, outgoing)
        await _until_disconnect(exchange, receive)

    async def _serve_upload(
        self,
        plan: MiddlewarePlan,
        view: View,
        route: ProxyRoute,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        admitted = await self._admit_upload(plan, scope, view)
        if admitted is None:
            await self.app(scope, receive, send)  # not a byte of the body read
            return
        request, user_id, spool = admitted
        incoming = _BodyReceiver(receive)
        try:
            try:
                if not await _spool_body(spool, incoming):
                    return  # the client left before its body arrived
                body = spool.finish(request.META["CONTENT_TYPE"])
            except ProblemError as exc:
                spool.close()
                response = exc.response()
                if not await _drop_rest(incoming, limit=self.max_upload):
                    response["Connection"] = "close"  # the rest stays unread
                await self._send(plan, request, response, send)
                return
            exchange = self._respond(plan, request, route, user_id, send, body)
            await _until_disconnect(exchange, receive)
        finally:
            spool.close()

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, bool] | None:
        """(body, complete): at most MAX_JSON_BODY bytes, the rest left unread."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_body:
                    return b"", False  # Django refuses it (413/400); let it read the body
                break
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True
            if size > self.max_body:
                return b"".join(chunks), False

    async def _admit(
        self, plan: MiddlewarePlan, scope: Scope, body: bytes, view: View
    ) -> tuple[ASGIRequest, Any] | None:
        """The request and the user to proxy for, or None to leave the request to Django."""
        try:
            request = ASGIRequest(scope, io.BytesIO(body))
            if not plan.admits(request, view):
                return None
            read_json_object(request)  # 415/413/400 are Django's to give
            session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
            if not session_key:
                return None
            user_id = await self.sessions.user_id(session_key)
        except Exception:
            # ProblemError, DisallowedHost, an undecodable header...: Django
            # answers each its own way.
            return None
        return None if user_id is None else (request, user_id)

    async def _admit_upload(
        self, plan: MiddlewarePlan, scope: Scope, view: View
    ) -> tuple[ASGIRequest, Any, UploadSpool] | None:
        """The request, its user and an empty spool for its body, or None for Django."""
        try:
            request = ASGIRequest(scope, io.BytesIO())
            # As csrf_protect_raw_body: the token can only be in the header.
            request.POST = QueryDict()  # type: ignore[misc]
            if not plan.admits(request, view):
                return None
            if (
                _RAW_BODY_CSRF.process_request(request) is not None
                or _RAW_BODY_CSRF.process_view(request, _csrf_protected_view, (), {}) is not None
            ):
                return None
            boundary = check_upload_headers(request)
            session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
            if not session_key:
                return None
            user_id = await self.sessions.user_id(session_key)
            if user_id is None:
                return None
            return request, user_id, UploadSpool(boundary)
        except Exception:
            return None  # as in _admit: Django answers each refusal its own way

    async def _respond(
        self,
        plan: MiddlewarePlan,
        request: ASGIRequest,
        route: ProxyRoute,
        user_id: Any,
        send: Send,
        body: OutgoingBody,
    ) -> None:
        try:
            response = await forward(request, route, user_id=user_id, body=body)
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
        _RAW_BODY_CSRF.process_response(request, response)
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


async def send_response(response: HttpResponseBase, send: Send) -> None:
    """Send a Django response over ASGI as Django's handler would, minus its thread hop.

    An ``EventStreamResponse`` is relayed chunk by chunk, and its relay is
    closed here whatever happens (a cancelled send included).
    """
    headers = [(name.encode("ascii"), value.encode("latin-1")) for name, value in response.items()]
    headers += [
        (b"Set-Cookie", cookie.output(header="").encode("ascii").strip())
        for cookie in response.cookies.values()
    ]
    relay = getattr(response, "relay", None)
    try:
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        if not response.streaming:
            await send({"type": "http.response.body", "body": response.content})  # type: ignore[attr-defined]
            return
        async for chunk in relay if relay is not None else aiter(response):  # type: ignore[call-overload]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        if (aclose := getattr(relay, "aclose", None)) is not None:
            await aclose()


async def _until_disconnect(work: Awaitable[None], receive: Receive) -> None:
    """Run ``work`` in this task, cancelling it if the client disconnects first."""
    task = asyncio.current_task()
    assert task is not None
    finished = False
    left = False

    async def listen() -> None:
        nonlocal left
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not finished:
                    left = True
                    task.cancel()
                return

    listener = asyncio.ensure_future(listen())
    try:
        await work
    except asyncio.CancelledError:
        if not left:
            raise
        task.uncancel()  # our own cancel: the client left, nothing more to do
    finally:
        finished = True
        listener.cancel()


class _BodyReceiver:
    """``receive`` for a request body that remembers whether the body has ended."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.ended = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.ended = True
        return message


async def _spool_body(spool: UploadSpool, body: _BodyReceiver) -> bool:
    """Feed the request body to ``spool`` as it arrives; False if the client left.

    ``spool.write`` counts the bytes and raises 413 past the upload limit
    (which BodyLimit, lamla/asgi.py, enforces before this too).
    """
    while not body.ended:
        message = await body()
        if message["type"] == "http.disconnect":
            return False
        spool.write(message.get("body", b""))
    return True


async def _drop_rest(body: _BodyReceiver, *, limit: int) -> bool:
    """Read and drop what is left of a refused body; False if more than ``limit`` is left.

    Django reads the whole body (up to BodyLimit's cut) before its view
    refuses it, and answers on a connection that can carry the next request.
    The fast path does the same rather than leave the client sending into a
    connection that answered already.
    """
    dropped = 0
    while not body.ended:
        if dropped > limit:
            return False
        dropped += len((await body()).get("body", b""))
    return True


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """``receive`` for Django: the body read so far, then the rest from the client."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": not complete}

    return replay
