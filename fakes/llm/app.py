"""The fake LLM as one Starlette app: the OpenAI routes under /v1 and the control API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fakes.llm import control
from fakes.llm.behaviours import Behaviour
from fakes.llm.completions import ChatCompletions
from fakes.llm.errors import openai_error, problem
from fakes.llm.recorder import RecorderMiddleware
from fakes.llm.state import FakeLLMState

MODEL_ID = "fake-model"


async def list_models(request: Request) -> Response:
    model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "fakes"}
    return JSONResponse({"object": "list", "data": [model]})


async def http_error(request: Request, exc: Exception) -> Response:
    """404 and 405 in the dialect of the path: OpenAI's under /v1, RFC 9457 elsewhere."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/v1"):
        response = openai_error(exc.status_code, exc.detail)
    else:
        response = problem(exc.status_code, exc.detail, f"{request.method} {request.url.path}")
    response.headers.update(exc.headers or {})
    return response


def create_app(*, token_delay: float = 0.0) -> Starlette:
    """A fresh fake with its own state on `app.state.fake`.

    ``token_delay`` paces the default reply (a person watching a demo sees it stream).
    """
    state = FakeLLMState(default=Behaviour(token_delay=token_delay))
    routes = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/chat/completions", ChatCompletions(), methods=["POST"]),
        *control.routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RecorderMiddleware, state=state)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.fake = state
    return app
