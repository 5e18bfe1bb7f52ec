"""A minimal gateway for the async proxy contract, written with Starlette and httpx.

It owns users (a file written by ``users.py``), sessions (in memory) and CSRF (double
submit: the ``csrftoken`` cookie echoed in ``X-CSRFToken``), and proxies the AI routes
over one pooled ``httpx.AsyncClient`` to the internal service, relaying the event
stream as it arrives. Run it with ``uvicorn --factory app:create_app`` (README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar

import httpx
import users
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import Headers, MutableHeaders, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("starlette_gateway")

MAX_JSON = 1024 * 1024
MAX_FILE = 10 * 1024 * 1024
MULTIPART_SLACK = 64 * 1024  # the part headers and the message around the file
MAX_UPSTREAM_HEADER = 8 * 1024
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CSRF_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
TYPE_BY_SUFFIX = {"pdf": "application/pdf", "txt": "text/plain", "md": "text/markdown"}
TERMINAL_EVENT = re.compile(rb"^event: ?(?:done|error)\r?$", re.MULTILINE)
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    service_url: str
    secret: str
    users_file: str
    cors_origins: frozenset[str] = frozenset()
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    pool_timeout: float = 5.0
    max_connections: int = 100
    max_keepalive: int = 20

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        def number(name: str, default: float) -> float:
            return float(env.get(name) or default)

        secret = env.get("SERVICE_SECRET", "")
        if not secret:
            raise SystemExit("SERVICE_SECRET must be set (the service's X-Internal-Secret)")
        origins = env.get("CORS_ORIGINS", "")
        return cls(
            service_url=env.get("SERVICE_URL") or "http://127.0.0.1:8001",
            secret=secret,
            users_file=env.get("GATEWAY_USERS_FILE") or "users.json",
            cors_origins=frozenset(o.strip() for o in origins.split(",") if o.strip()),
            connect_timeout=number("SERVICE_CONNECT_TIMEOUT", 5),
            read_timeout=number("SERVICE_READ_TIMEOUT", 60),
            pool_timeout=number("SERVICE_POOL_TIMEOUT", 5),
            max_connections=int(number("SERVICE_MAX_CONNECTIONS", 100)),
            max_keepalive=int(number("SERVICE_MAX_KEEPALIVE", 20)),
        )


@dataclass(frozen=True)
class ProxyRoute:
    path: str
    upstream: str
    kind: str  # "json", "stream" or "upload"


PROXIED = (
    ProxyRoute("/api/chat/", "/chatbot/", "json"),
    ProxyRoute("/api/chat/stream/", "/chatbot/stream/", "stream"),
    ProxyRoute("/api/chat/file/", "/chatbot/file/", "upload"),
    ProxyRoute("/api/quiz/generate/", "/quiz/", "json"),
)


# -- errors: RFC 9457 problem+json ----------------------------------------------------------------
class Problem(Exception):
    """An error answered as problem+json."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, dict(headers or {})


def problem_body(status: int, detail: str) -> dict[str, Any]:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}


def problem_response(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse(body, status, headers=headers, media_type="application/problem+json")


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc.status, problem_body(exc.status, exc.detail), exc.headers)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # 404 and 405 from the router
    return problem_response(exc.status_code, problem_body(exc.status_code, exc.detail), exc.headers)


async def on_client_gone(request: Request, exc: Exception) -> Response:
    return Response(status_code=400)  # the client left while sending its body: nobody reads this


async def on_crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, problem_body(500, "The gateway failed."))


def upstream_failure(exc: httpx.HTTPError) -> Problem:
    log.warning("service request failed: %s", type(exc).__name__)
    if isinstance(exc, httpx.PoolTimeout):
        return Problem(503, "The gateway is busy; try again.", {"Retry-After": "1"})
    if isinstance(exc, httpx.TimeoutException):
        return Problem(504, "The service did not answer in time.")
    return Problem(502, "The service could not be reached or broke off its answer.")


# -- every response: request id, security headers, CORS -------------------------------------------
class Edge:
    """X-Request-ID, nosniff and X-Frame-Options on every response; CORS for listed origins."""

    def __init__(self, app: ASGIApp, cors_origins: frozenset[str]) -> None:
        self.app, self.cors_origins = app, cors_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id", "")
        if not REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        origin = headers.get("origin", "")
        cors = origin in self.cors_origins

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["X-Request-ID"] = request_id
                out["X-Content-Type-Options"] = "nosniff"
                out["X-Frame-Options"] = "DENY"
                if cors:
                    out["Access-Control-Allow-Origin"] = origin
                    out["Access-Control-Allow-Credentials"] = "true"
                    out.add_vary_header("Origin")
            await send(message)

        if cors and scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            preflight = Response(
                status_code=204,
                headers={
                    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                    "Access-Control-Allow-Headers": "Content-Type, X-CSRFToken, X-Request-ID",
                    "Access-Control-Max-Age": "600",
                },
            )
            await preflight(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


# -- request bodies -------------------------------------------------------------------------------
def media_type(headers: Headers | httpx.Headers) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


async def limited_body(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives; 413 as soon as it is (or says it is) over ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"The request body is larger than {limit} bytes.")
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise Problem(413, f"The request body is larger than {limit} bytes.")
        yield chunk


async def read_json(request: Request) -> tuple[bytes, dict[str, Any]]:
    """The raw JSON body and the object it holds (415, 413 or 400 otherwise)."""
    if media_type(request.headers) != "application/json":
        raise Problem(415, "The body must be application/json.")
    body = b"".join([chunk async for chunk in limited_body(request, MAX_JSON)])
    try:
        data = json.loads(body.decode("utf-8"))
    except ValueError:
        raise Problem(400, "The body is not valid UTF-8 JSON.") from None
    if not isinstance(data, dict):
        raise Problem(400, "The body must be a JSON object.")
    return body, data


def safe_filename(name: str) -> str:
    """The last path part without control characters; ``upload`` when nothing is left."""
    base = "".join(ch for ch in re.split(r"[\\/]", name)[-1] if ch.isprintable())
    return base if base.strip(". ") else "upload"


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_file(name: str, declared: str, content: bytes) -> None:
    """415 unless the bytes are what the type (or, for a generic type, the name) says."""
    if declared in ("", "application/octet-stream"):
        suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        declared = TYPE_BY_SUFFIX.get(suffix, "")
    if declared == "application/pdf":
        ok = content.startswith(b"%PDF-")
    elif declared in ("text/plain", "text/markdown"):
        ok = b"\0" not in content and is_utf8(content)
    else:
        raise Problem(415, "Only text, Markdown and PDF files are accepted.")
    if not ok:
        raise Problem(415, f"The file's bytes are not {declared}.")


async def read_upload(request: Request) -> tuple[dict[str, str], dict[str, Any]]:
    """The form fields and the checked file of a multipart upload, ready for httpx."""
    if media_type(request.headers) != "multipart/form-data":
        raise Problem(415, "The body must be multipart/form-data.")
    body = limited_body(request, MAX_FILE + MULTIPART_SLACK)
    try:
        form = await MultiPartParser(request.headers, body, max_files=1, max_fields=10).parse()
    except MultiPartException as exc:
        raise Problem(400, f"Malformed multipart body: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise Problem(422, "The form needs a file part named 'file'.")
        if (upload.size or 0) > MAX_FILE:
            raise Problem(413, f"The file is larger than {MAX_FILE} bytes.")
        content = await upload.read()
        content_type = upload.content_type or "application/octet-stream"
        check_file(upload.filename or "", content_type.split(";")[0].strip().lower(), content)
        fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
        return fields, {"file": (safe_filename(upload.filename or ""), content, content_type)}
    finally:
        await form.close()


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client leaves first (its body is read already)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # let httpx close the upstream request
    if task.cancelled():
        raise Problem(400, "The client closed the request.")  # nobody is there to read it
    return task.result()


# -- answers from the service ---------------------------------------------------------------------
def relayed_answer(upstream: httpx.Response, body: bytes) -> Response:
    """The service's JSON answer or 4xx problem; 502 for anything else."""
    status = upstream.status_code
    if status in (401, 403):
        log.error("the service refused the gateway (%s): SERVICE_SECRET does not match", status)
        raise Problem(502, "The service refused the gateway's credentials.")
    if status >= 500 or (status < 400 and status != 200):
        raise Problem(502, "The service failed.")
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status >= 400:
        relayed = data if isinstance(data, dict) else {}
        problem = {**problem_body(status, "The service refused the request."), **relayed}
        problem["status"] = status
        retry_after = upstream.headers.get("retry-after")
        return problem_response(
            status, problem, {"Retry-After": retry_after} if retry_after else None
        )
    if media_type(upstream.headers) != "application/json" or data is None:
        raise Problem(502, "The service sent an answer the gateway cannot relay.")
    return Response(body, 200, media_type="application/json")


class Slot:
    """A place among the gateway's ``max_connections`` upstream requests; released once.

    The gateway queues for these itself, so httpx's pool never has a queue: httpcore 1.0
    loses a pool slot for good when a request waiting in its queue is cancelled
    (encode/httpcore#1093), as happens whenever a client leaves while it waits.
    """

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots, self._held = slots, True

    @classmethod
    async def take(cls, slots: asyncio.Semaphore, wait: float) -> Slot:
        try:
            async with asyncio.timeout(wait):
                await slots.acquire()
        except TimeoutError:
            raise Problem(503, "The gateway is busy; try again.", {"Retry-After": "1"}) from None
        return cls(slots)

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()

    async def close(self, upstream: httpx.Response) -> None:
        await upstream.aclose()
        self.release()


def event_end(buffer: bytes) -> int:
    """How many leading bytes of ``buffer`` are whole events (up to its last blank line)."""
    ends = [buffer.rfind(sep) + len(sep) for sep in (b"\n\n", b"\r\n\r\n") if sep in buffer]
    return max(ends, default=0)


def error_event(problem: Problem) -> bytes:
    data = json.dumps(problem_body(problem.status, problem.detail), separators=(",", ":"))
    return f"event: error\ndata: {data}\n\n".encode()


async def relay_events(upstream: httpx.Response, slot: Slot) -> AsyncIterator[bytes]:
    """The service's events as they arrive, whole events only; an error event if it breaks off."""
    pending, finished = b"", False
    try:
        async for chunk in upstream.aiter_raw():
            if finished:
                continue  # read to the end, so the connection goes back to the pool
            pending += chunk
            if end := event_end(pending):
                events, pending = pending[:end], pending[end:]
                yield events
                finished = TERMINAL_EVENT.search(events) is not None
        failure = None if finished else Problem(502, "The service ended the stream early.")
    except httpx.HTTPError as exc:
        failure = None if finished else upstream_failure(exc)
    finally:
        await slot.close(upstream)
    if failure is not None:
        yield error_event(failure)


# -- the gateway ----------------------------------------------------------------------------------
class Gateway:
    """The routes, with what they share: settings, users, sessions and the pooled client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.users = users.load(settings.users_file)
        self.users_by_id = {user.id: user for user in self.users.values()}
        self.sessions: dict[str, int] = {}  # session id -> user id
        self.slots = asyncio.Semaphore(settings.max_connections)
        self._client: httpx.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        s = self.settings
        async with httpx.AsyncClient(
            base_url=s.service_url,
            timeout=httpx.Timeout(s.read_timeout, connect=s.connect_timeout, pool=s.pool_timeout),
            # keep-alive below the service's (uvicorn: 5 s), so a closed connection is never reused
            limits=httpx.Limits(
                max_connections=s.max_connections,
                max_keepalive_connections=s.max_keepalive,
                keepalive_expiry=4.0,
            ),
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # keep no service cookie
            headers={"Accept-Encoding": "identity"},  # relay the bytes as they are
            trust_env=False,
        ) as client:
            self._client = client
            yield
        self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "the lifespan has not started"
        return self._client

    # -- sessions and CSRF ------------------------------------------------------------------------
    def user_of(self, request: Request) -> users.User | None:
        user_id = self.sessions.get(request.cookies.get("sessionid", ""))
        return None if user_id is None else self.users_by_id.get(user_id)

    def check_csrf(self, request: Request) -> None:
        cookie = request.cookies.get("csrftoken", "").encode()
        header = request.headers.get("x-csrftoken", "").encode()
        if not cookie or not hmac.compare_digest(cookie, header):
            raise Problem(403, "CSRF token missing or incorrect.")
        origin = request.headers.get("origin")
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin is not None and origin != own and origin not in self.settings.cors_origins:
            raise Problem(403, "The request's origin is not trusted.")

    @staticmethod
    def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            max_age=31_449_600 if name == "csrftoken" else 1_209_600,
            httponly=name == "sessionid",
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    # -- routes -----------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def csrf(self, request: Request) -> Response:
        token = request.cookies.get("csrftoken", "")
        if not CSRF_TOKEN.fullmatch(token):
            token = secrets.token_urlsafe(32)
        response = JSONResponse({"csrfToken": token})
        self.set_cookie(response, request, "csrftoken", token)
        return response

    async def login(self, request: Request) -> Response:
        self.check_csrf(request)
        _, data = await read_json(request)
        name, password = data.get("username"), data.get("password")
        if not (isinstance(name, str) and name and isinstance(password, str) and password):
            raise Problem(400, "username and password must be non-empty strings.")
        user = self.users.get(name)
        valid = await asyncio.to_thread(users.verify, user, password)  # as slow for any name
        if user is None or not valid:
            raise Problem(401, "Invalid username or password.")
        self.sessions.pop(request.cookies.get("sessionid", ""), None)  # rotate the session
        session_id, token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.sessions[session_id] = user.id
        response = JSONResponse({"id": user.id, "username": user.name, "csrfToken": token})
        self.set_cookie(response, request, "sessionid", session_id)
        self.set_cookie(response, request, "csrftoken", token)
        return response

    async def logout(self, request: Request) -> Response:
        self.check_csrf(request)
        self.sessions.pop(request.cookies.get("sessionid", ""), None)
        response = Response(status_code=204)
        response.delete_cookie("sessionid", samesite="lax", httponly=True)
        return response

    async def me(self, request: Request) -> Response:
        user = self.user_of(request)
        if user is None:
            raise Problem(401, "Not logged in.")
        return JSONResponse({"id": user.id, "username": user.name})

    def proxy(self, route: ProxyRoute) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            user = self.user_of(request)
            if user is None:
                raise Problem(401, "Not logged in.")
            self.check_csrf(request)
            # Built from scratch: no client header (cookies, X-Internal-*, hop-by-hop) goes on.
            headers = {
                "X-Internal-Secret": self.settings.secret,
                "X-User-Id": str(user.id),
                "X-Request-ID": request.state.request_id,
                "X-Forwarded-For": request.client.host if request.client else "",
            }
            if route.kind == "upload":
                fields, files = await read_upload(request)
                outgoing = self.client.build_request(
                    "POST", route.upstream, data=fields, files=files, headers=headers
                )
            else:
                body, _ = await read_json(request)
                headers["Content-Type"] = "application/json"
                outgoing = self.client.build_request(
                    "POST", route.upstream, content=body, headers=headers
                )
            return await until_disconnect(request, self.forward(outgoing, route))

        return endpoint

    async def forward(self, outgoing: httpx.Request, route: ProxyRoute) -> Response:
        slot = await Slot.take(self.slots, self.settings.pool_timeout)
        streaming = False
        try:
            upstream = await self.client.send(outgoing, stream=True)
            try:
                if any(len(k) + len(v) > MAX_UPSTREAM_HEADER for k, v in upstream.headers.raw):
                    raise Problem(502, "The service sent a header the gateway cannot relay.")
                if route.kind == "stream" and upstream.status_code == 200:
                    if media_type(upstream.headers) != "text/event-stream":
                        raise Problem(502, "The service did not answer with an event stream.")
                    streaming = True
                    return StreamingResponse(
                        relay_events(upstream, slot),
                        media_type="text/event-stream",
                        headers=SSE_HEADERS,
                        background=BackgroundTask(slot.close, upstream),  # if it never starts
                    )
                return relayed_answer(upstream, await upstream.aread())
            finally:
                if not streaming:
                    await upstream.aclose()
        except httpx.HTTPError as exc:
            raise upstream_failure(exc) from None
        finally:
            if not streaming:
                slot.release()


def create_app(settings: Settings | None = None) -> ASGIApp:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per upstream request
    settings = settings or Settings.from_env()
    gateway = Gateway(settings)
    routes = [
        Route("/api/health/", gateway.health, methods=["GET"]),
        Route("/api/auth/csrf/", gateway.csrf, methods=["GET"]),
        Route("/api/auth/login/", gateway.login, methods=["POST"]),
        Route("/api/auth/logout/", gateway.logout, methods=["POST"]),
        Route("/api/auth/me/", gateway.me, methods=["GET"]),
        *(Route(route.path, gateway.proxy(route), methods=["POST"]) for route in PROXIED),
    ]
    app = Starlette(
        routes=routes,
        lifespan=gateway.lifespan,
        exception_handlers={
            Problem: on_problem,
            HTTPException: on_http_exception,
            ClientDisconnect: on_client_gone,
            Exception: on_crash,
        },
    )
    return Edge(app, settings.cors_origins)
