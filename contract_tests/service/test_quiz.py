"""SVC-QUIZ: quiz generation, bounded, with one retry on an invalid LLM answer."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from harness.client import assert_problem
from harness.fakes import FakeControl, new_token

PATH = "/quiz/"


def assert_quiz(body: Any, num_questions: int) -> None:
    assert isinstance(body, dict), body
    assert isinstance(body.get("topic"), str), body
    assert body["topic"], body
    questions = body.get("questions")
    assert isinstance(questions, list), body
    assert len(questions) == num_questions, f"{len(questions)} questions, not {num_questions}"
    for question in questions:
        assert isinstance(question, dict), question
        assert isinstance(question.get("question"), str), question
        assert question["question"], question
        options = question.get("options")
        assert isinstance(options, list), question
        assert len(options) == 4, question
        assert all(isinstance(o, str) and o for o in options), question
        index = question.get("answer_index")
        assert type(index) is int, question
        assert 0 <= index <= 3, question
        assert isinstance(question.get("explanation"), str), question


@pytest.mark.req("SVC-QUIZ-1")
@pytest.mark.parametrize(
    ("num_questions", "difficulty"), [(1, "easy"), (5, "medium"), (20, "hard")]
)
def test_svc_quiz_1_quiz_has_exactly_the_questions_asked_for(
    service_client: httpx.Client, fake_llm: FakeControl, num_questions: int, difficulty: str
) -> None:
    token = new_token()
    body = {"topic": f"Photosynthesis {token}", "num_questions": num_questions}
    response = service_client.post(PATH, json={**body, "difficulty": difficulty})
    assert response.status_code == 200, response.text
    assert_quiz(response.json(), num_questions)
    assert len(fake_llm.requests(token)) == 1


def _out_of_bounds(token: str) -> dict[str, Any]:
    topic = f"Rivers {token}"
    return {
        "zero-questions": {"topic": topic, "num_questions": 0, "difficulty": "easy"},
        "21-questions": {"topic": topic, "num_questions": 21, "difficulty": "easy"},
        "negative": {"topic": topic, "num_questions": -1, "difficulty": "easy"},
        "fractional": {"topic": topic, "num_questions": 2.5, "difficulty": "easy"},
        "extreme-difficulty": {"topic": topic, "num_questions": 3, "difficulty": "extreme"},
        "missing-topic": {"num_questions": 3, "difficulty": "easy"},
        "topic-not-string": {"topic": 123, "num_questions": 3, "difficulty": "easy"},
        "body-not-object": [topic, 3, "easy"],
    }


OUT_OF_BOUNDS = list(_out_of_bounds("x"))


@pytest.mark.req("SVC-QUIZ-2")
@pytest.mark.parametrize("case", OUT_OF_BOUNDS)
def test_svc_quiz_2_out_of_bounds_request_is_422_before_the_llm(
    service_client: httpx.Client, fake_llm: FakeControl, case: str
) -> None:
    response = service_client.post(PATH, json=_out_of_bounds(new_token())[case])
    assert_problem(response, 422)
    assert fake_llm.requests() == [], "the LLM was called for an invalid request"


def _question(number: int, **changes: Any) -> dict[str, Any]:
    question = {
        "question": f"Question {number}?",
        "options": ["A", "B", "C", "D"],
        "answer_index": 1,
        "explanation": "Because B.",
    }
    return {**question, **changes}


INVALID_ANSWERS = {
    "not-json": "Sure! Here is your quiz: 1. What is water?",
    "too-few-questions": json.dumps({"topic": "t", "questions": [_question(1)]}),
    "three-options": json.dumps(
        {"topic": "t", "questions": [_question(1, options=["A", "B", "C"]), _question(2)]}
    ),
    "answer-out-of-range": json.dumps(
        {"topic": "t", "questions": [_question(1), _question(2, answer_index=4)]}
    ),
    "no-questions-key": json.dumps({"topic": "t"}),
}


@pytest.mark.req("SVC-QUIZ-3")
@pytest.mark.parametrize("answer", list(INVALID_ANSWERS))
def test_svc_quiz_3_invalid_llm_answer_is_retried_once(
    service_client: httpx.Client, fake_llm: FakeControl, answer: str
) -> None:
    token = fake_llm.behave(content=INVALID_ANSWERS[answer], times=1)
    body = {"topic": f"Tides {token}", "num_questions": 2, "difficulty": "medium"}
    response = service_client.post(PATH, json=body)
    assert response.status_code == 200, response.text
    assert_quiz(response.json(), 2)
    assert len(fake_llm.requests(token)) == 2, "the invalid answer was not retried exactly once"


@pytest.mark.req("SVC-QUIZ-3")
@pytest.mark.parametrize("answer", list(INVALID_ANSWERS))
def test_svc_quiz_3_invalid_answer_twice_is_502_after_one_retry(
    service_client: httpx.Client, fake_llm: FakeControl, answer: str
) -> None:
    token = fake_llm.behave(content=INVALID_ANSWERS[answer])
    body = {"topic": f"Tides {token}", "num_questions": 2, "difficulty": "medium"}
    response = service_client.post(PATH, json=body)
    assert_problem(response, 502)
    assert len(fake_llm.requests(token)) == 2, "not exactly one retry"
