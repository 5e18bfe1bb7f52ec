"""Ask the LLM for a quiz in JSON and accept only a valid one.

LLMs get JSON almost right: too many questions, a code fence, a missing field.
We trim extra questions, strip a fence, validate against the schema, and ask once
more if the answer is still not a valid quiz; a second failure is the LLM's fault (502).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

from fastapi_service.core.llm import LLMClient, LLMUnavailable, Message
from fastapi_service.schemas import Quiz, QuizRequest

logger = logging.getLogger("fastapi_service")

ATTEMPTS = 2
JSON_OBJECT = {"type": "json_object"}

SYSTEM_PROMPT = (
    "You write multiple-choice quizzes. Answer with one JSON object and nothing else, "
    'shaped as {"topic": string, "questions": [{"question": string, "options": '
    '[4 strings], "answer_index": integer 0-3, "explanation": string}]}.'
)


class InvalidQuiz(ValueError):
    """The LLM's answer is not a valid quiz of the requested size."""


def quiz_messages(request: QuizRequest) -> list[Message]:
    """The prompt; it states the count as "<N> questions", which is what LLMs follow."""
    n = request.num_questions
    user = (
        f"Write exactly {n} multiple-choice questions ({n} questions in total) "
        f"at {request.difficulty} difficulty about this topic: {request.topic}\n"
        "Each question has exactly 4 options, the index (0-3) of the correct option "
        "in answer_index, and a one-sentence explanation."
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_quiz(content: str, request: QuizRequest) -> Quiz:
    """Validate the LLM's text as a quiz of exactly `num_questions` questions."""
    try:
        data: Any = json.loads(_strip_fence(content))
    except ValueError:
        raise InvalidQuiz("not JSON") from None
    if not isinstance(data, dict):
        raise InvalidQuiz("not a JSON object")
    questions = data.get("questions")
    if not isinstance(questions, list):
        raise InvalidQuiz("no list of questions")
    if len(questions) < request.num_questions:
        raise InvalidQuiz(f"{len(questions)} questions instead of {request.num_questions}")
    try:
        return Quiz.model_validate(
            {"topic": request.topic, "questions": questions[: request.num_questions]}
        )
    except ValidationError as exc:
        raise InvalidQuiz(f"{exc.error_count()} schema errors") from None


async def generate_quiz(llm: LLMClient, request: QuizRequest, *, user: str | None) -> Quiz:
    """Ask up to `ATTEMPTS` times; LLM transport errors are not retried (they map to statuses)."""
    messages = quiz_messages(request)
    for attempt in range(1, ATTEMPTS + 1):
        completion = await llm.complete(
            messages, operation="quiz", user=user, response_format=JSON_OBJECT
        )
        try:
            return parse_quiz(completion.text, request)
        except InvalidQuiz as exc:
            logger.warning("invalid quiz from the LLM (attempt %d): %s", attempt, exc)
    raise LLMUnavailable(f"The LLM did not produce a valid quiz in {ATTEMPTS} attempts.")


def _strip_fence(content: str) -> str:
    text = content.strip()
    if text.startswith("```") and text.endswith("```") and len(text) >= 6:
        text = text[3:-3]
        first_line, _, rest = text.partition("\n")
        text = rest if first_line.strip().isalpha() or not first_line.strip() else text
    return text
