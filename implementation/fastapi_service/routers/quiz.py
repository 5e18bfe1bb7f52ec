"""Quiz generation."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from fastapi_service.core.disconnect import until_disconnect
from fastapi_service.core.quiz import generate_quiz
from fastapi_service.dependencies import (
    SECURED,
    LLMDep,
    UserDep,
    problem_responses,
    require_json,
)
from fastapi_service.schemas import Quiz, QuizRequest

router = APIRouter(prefix="/quiz", tags=["quiz"], dependencies=SECURED)


@router.post(
    "/",
    summary="Write a multiple-choice quiz",
    operation_id="quiz",
    response_model=Quiz,
    responses=problem_responses(400, 401, 403, 413, 415, 422, 502, 503, 504),
    dependencies=[Depends(require_json)],
)
async def quiz(body: QuizRequest, request: Request, llm: LLMDep, user: UserDep) -> Quiz:
    return await until_disconnect(request, generate_quiz(llm, body, user=user))
