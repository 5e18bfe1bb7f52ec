"""The probe routes, the only ones that need no secret (main.py exempts this router).

`GET /health` is the seed's liveness route; `/healthz` is the same for supervisors
that expect that name; `/readyz` says whether the LLM answers and no stop began
(core/readiness.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fastapi_service.core.problems import PROBLEM_MEDIA_TYPE, problem
from fastapi_service.schemas import Health, NotReady, Ready

router = APIRouter(tags=["health"])
NOT_READY_SCHEMA = f"#/components/schemas/{NotReady.__name__}"  # main.py adds the model


@router.get("/health", summary="Liveness probe", operation_id="health", response_model=Health)
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/healthz", summary="Liveness probe (the process alone)", operation_id="healthz",
    response_model=Health,
)  # fmt: skip
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness probe: the LLM answers and the process is not stopping",
    operation_id="readyz",
    response_model=Ready,
    responses={
        503: {
            "description": "A check failed, or the process is stopping (SIGTERM).",
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": NOT_READY_SCHEMA}}},
        }
    },
)
async def readyz(request: Request) -> Any:
    checks = await request.app.state.readiness.checks()
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        return problem(503, "Not ready: " + ", ".join(failing) + ".", checks=checks)
    return JSONResponse({"status": "ready", "checks": checks})
