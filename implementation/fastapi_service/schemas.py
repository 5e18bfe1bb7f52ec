"""Request and response bodies of the service, which are also its OpenAPI schemas.

Requests are strict (no coercion of "5" to 5, no unknown fields) so a malformed call
is refused with 422 before the LLM is paid for; the quiz model is lax because it
validates what an LLM wrote, after we have already asked for it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MAX_MESSAGE_CHARS = 32_000
MAX_HISTORY = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HistoryMessage(_Strict):
    """One earlier turn of the conversation, as the caller keeps it."""

    role: Literal["user", "assistant", "system"]
    content: Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]


class ChatRequest(_Strict):
    """A message and the conversation so far; the service keeps no state between calls."""

    message: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]
    history: Annotated[list[HistoryMessage], Field(max_length=MAX_HISTORY)] = []


class Usage(BaseModel):
    """Token counts reported by the LLM."""

    prompt_tokens: Annotated[int, Field(ge=0)]
    completion_tokens: Annotated[int, Field(ge=0)]
    total_tokens: Annotated[int, Field(ge=0)]


class ChatResponse(BaseModel):
    """The LLM's whole answer."""

    reply: str
    usage: Usage


def _integral_float(value: Any) -> Any:
    """JSON Schema counts 5.0 as an integer; strict mode alone would refuse it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class QuizRequest(_Strict):
    """What quiz to write."""

    topic: Annotated[str, Field(min_length=1, max_length=200)]
    num_questions: Annotated[int, Field(ge=1, le=20), BeforeValidator(_integral_float)]
    difficulty: Literal["easy", "medium", "hard"] = "medium"


class Question(BaseModel):
    """One multiple-choice question with exactly four options."""

    question: str
    options: Annotated[list[str], Field(min_length=4, max_length=4)]
    answer_index: Annotated[int, Field(ge=0, le=3)]
    explanation: str


class Quiz(BaseModel):
    """A quiz with exactly the number of questions asked for."""

    topic: str
    questions: Annotated[list[Question], Field(min_length=1, max_length=20)]


class TokenData(BaseModel):
    """The data of a stream's `token` event."""

    text: str


class DoneData(BaseModel):
    """The data of a stream's final `done` event."""

    usage: Usage


class Health(BaseModel):
    """Liveness only: it says nothing about the LLM."""

    status: Literal["ok"]


class ValidationIssue(BaseModel):
    """Where a request failed validation and why."""

    loc: list[str | int]
    msg: str
    type: str


class Ready(BaseModel):
    """Every readiness check passed: ``draining`` and ``llm`` are ``ok``."""

    status: Literal["ready"]
    checks: dict[str, Literal["ok", "fail"]]


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str


class NotReady(Problem):
    """A 503 problem naming each readiness check with its state."""

    checks: dict[str, Literal["ok", "fail"]]


class ValidationProblem(Problem):
    """A 422 problem with the list of validation errors as an extension member."""

    errors: list[ValidationIssue]
