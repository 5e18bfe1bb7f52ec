"""Quiz generation (SVC-QUIZ-*): bounds, prompt, validation and the single retry."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
import respx

from fastapi_service.core.quiz import InvalidQuiz, parse_quiz, quiz_messages
from fastapi_service.schemas import QuizRequest

from .helpers import LLM_URL, assert_problem, completion, sent_payload


def question(i: int) -> dict[str, Any]:
    return {
        "question": f"Q{i}?",
        "options": ["a", "b", "c", "d"],
        "answer_index": i % 4,
        "explanation": f"because {i}",
    }


def quiz_text(n: int, topic: str = "whatever the LLM says") -> str:
    return json.dumps({"topic": topic, "questions": [question(i) for i in range(n)]})


def reply(text: str) -> httpx.Response:
    return httpx.Response(200, json=completion(text))


@pytest.mark.asyncio
async def test_valid_quiz(client: httpx.AsyncClient, llm: respx.MockRouter) -> None:
    route = llm.post(LLM_URL).mock(return_value=reply(quiz_text(5)))
    response = await client.post(
        "/quiz/",
        json={"topic": "Photosynthesis", "num_questions": 5, "difficulty": "hard"},
        headers={"X-User-Id": "7"},
    )
    assert response.status_code == 200, response.text
    quiz = response.json()
    assert quiz["topic"] == "Photosynthesis"
    assert quiz["questions"] == [question(i) for i in range(5)]
    payload = sent_payload(route)
    assert payload["response_format"] == {"type": "json_object"}
    assert payload["user"] == "7"
    assert payload["stream"] is False
    prompt = payload["messages"][-1]["content"]
    assert re.search(r"\b5 questions\b", prompt)
    assert "Photosynthesis" in prompt
    assert "hard" in prompt


@pytest.mark.asyncio
async def test_difficulty_defaults_to_medium(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    route = llm.post(LLM_URL).mock(return_value=reply(quiz_text(1)))
    response = await client.post("/quiz/", json={"topic": "x", "num_questions": 1})
    assert response.status_code == 200
    assert "medium" in sent_payload(route)["messages"][-1]["content"]


@pytest.mark.asyncio
async def test_extra_questions_are_trimmed(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    route = llm.post(LLM_URL).mock(return_value=reply(quiz_text(7)))
    response = await client.post("/quiz/", json={"topic": "t", "num_questions": 3})
    assert [q["question"] for q in response.json()["questions"]] == ["Q0?", "Q1?", "Q2?"]
    assert route.call_count == 1


@pytest.mark.asyncio
async def test_invalid_answer_is_retried_once(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    route = llm.post(LLM_URL).mock(side_effect=[reply("not json"), reply(quiz_text(2))])
    response = await client.post("/quiz/", json={"topic": "t", "num_questions": 2})
    assert response.status_code == 200
    assert route.call_count == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[]",
        json.dumps({"questions": "none"}),
        quiz_text(1),  # fewer than asked
        json.dumps({"questions": [{**question(0), "options": ["a", "b", "c"]}] * 2}),
        json.dumps({"questions": [{**question(0), "answer_index": 4}] * 2}),
        json.dumps({"questions": [{"question": "q"}] * 2}),
    ],
)
async def test_two_invalid_answers_give_502(
    client: httpx.AsyncClient, llm: respx.MockRouter, bad: str
) -> None:
    route = llm.post(LLM_URL).mock(side_effect=[reply(bad), reply(bad), reply(quiz_text(2))])
    response = await client.post("/quiz/", json={"topic": "t", "num_questions": 2})
    assert_problem(response, 502)
    assert route.call_count == 2


@pytest.mark.asyncio
async def test_llm_errors_are_not_retried(client: httpx.AsyncClient, llm: respx.MockRouter) -> None:
    route = llm.post(LLM_URL).mock(return_value=httpx.Response(429, headers={"Retry-After": "2"}))
    response = await client.post("/quiz/", json={"topic": "t", "num_questions": 2})
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "2"
    assert route.call_count == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        {"topic": "t", "num_questions": 0},
        {"topic": "t", "num_questions": 21},
        {"topic": "t", "num_questions": -1},
        {"topic": "t", "num_questions": "5"},
        {"topic": "t", "num_questions": 2.5},
        {"topic": "t", "num_questions": True},
        {"topic": "", "num_questions": 2},
        {"topic": "x" * 201, "num_questions": 2},
        {"num_questions": 2},
        {"topic": "t"},
        {"topic": "t", "num_questions": 2, "difficulty": "extreme"},
        {"topic": "t", "num_questions": 2, "extra": True},
    ],
)
async def test_out_of_bounds_requests_get_422_before_the_llm(
    client: httpx.AsyncClient, llm: respx.MockRouter, body: dict[str, Any]
) -> None:
    route = llm.post(LLM_URL).mock(return_value=reply(quiz_text(2)))
    assert_problem(await client.post("/quiz/", json=body), 422)
    assert route.call_count == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("n", [1, 20])
async def test_bounds_are_inclusive(
    client: httpx.AsyncClient, llm: respx.MockRouter, n: int
) -> None:
    llm.post(LLM_URL).mock(return_value=reply(quiz_text(n)))
    response = await client.post("/quiz/", json={"topic": "t", "num_questions": n})
    assert len(response.json()["questions"]) == n


def test_parse_quiz_strips_a_code_fence() -> None:
    request = QuizRequest(topic="t", num_questions=1)
    for text in (f"```json\n{quiz_text(1)}\n```", f"```\n{quiz_text(1)}\n```", quiz_text(1)):
        assert parse_quiz(text, request).questions[0].question == "Q0?"


def test_parse_quiz_rejects_fewer_questions() -> None:
    with pytest.raises(InvalidQuiz):
        parse_quiz(quiz_text(2), QuizRequest(topic="t", num_questions=3))


@pytest.mark.parametrize("n", [1, 7, 20])
def test_prompt_states_the_count_as_digits_and_questions(n: int) -> None:
    messages = quiz_messages(QuizRequest(topic="Rivers", num_questions=n))
    assert f"{n} questions" in messages[-1]["content"]
    assert messages[-1]["role"] == "user"
