"""The `/_control/` API the contract suites use to program the fake and read what it saw."""

from __future__ import annotations

import json

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fakes.llm.behaviours import BehaviourSpec
from fakes.llm.errors import problem
from fakes.llm.state import FakeLLMState


def _state(request: Request) -> FakeLLMState:
    return request.app.state.fake


async def health(request: Request) -> Response:
    """Readiness probe that, unlike `/v1/models`, is never recorded."""
    return JSONResponse({"status": "ok"})


async def register_behaviour(request: Request) -> Response:
    raw = await request.body()
    try:
        spec = BehaviourSpec.model_validate_json(raw)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            return problem(400, "Bad Request", "The body is not valid JSON.")
        details = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()
        )
        return problem(422, "Unprocessable Content", details)
    _state(request).behaviours.register(spec)
    return JSONResponse({"match": spec.match}, status_code=201)


async def list_behaviours(request: Request) -> Response:
    return JSONResponse(_state(request).behaviours.describe())


async def release(request: Request) -> Response:
    match = request.path_params["match"]
    behaviours = _state(request).behaviours
    if not behaviours.known(match):
        return problem(404, "Not Found", f"No behaviour was registered for {json.dumps(match)}.")
    return JSONResponse({"match": match, "released": behaviours.release(match)})


async def list_requests(request: Request) -> Response:
    """Recorded requests, oldest first; `?match=tok` keeps those matched by or carrying `tok`."""
    match = request.query_params.get("match")
    records = _state(request).records
    return JSONResponse(
        [r.to_dict() for r in records if match is None or r.match == match or match in r.body]
    )


async def connections(request: Request) -> Response:
    return JSONResponse({"accepted": _state(request).accepted})


async def reset(request: Request) -> Response:
    _state(request).reset()
    return Response(status_code=204)


routes = [
    Route("/_control/health", health, methods=["GET"]),
    Route("/_control/behaviours", register_behaviour, methods=["POST"]),
    Route("/_control/behaviours", list_behaviours, methods=["GET"]),
    Route("/_control/release/{match:path}", release, methods=["POST"]),
    Route("/_control/requests", list_requests, methods=["GET"]),
    Route("/_control/connections", connections, methods=["GET"]),
    Route("/_control/reset", reset, methods=["POST"]),
]
