"""Liveness, the one route that needs no secret (the middleware exempts it)."""

from __future__ import annotations

from fastapi import APIRouter

from fastapi_service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness probe", operation_id="health", response_model=Health)
async def health() -> Health:
    return Health(status="ok")
