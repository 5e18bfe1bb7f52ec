"""Deterministic answers computed from the request alone.

Tests can predict every token: the default reply echoes the last user message, and a
request with a JSON `response_format` gets a valid quiz with the number of questions
the prompt asks for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fakes.llm.behaviours import Behaviour

ECHO_LIMIT = 200
TOPIC_LIMIT = 60
DEFAULT_QUESTIONS = 3
MAX_QUESTIONS = 20
JSON_FORMATS = frozenset({"json_object", "json_schema"})

_QUESTION_COUNT = re.compile(r"\b(\d{1,2})\s+(?:[\w-]+\s+){0,3}questions?\b", re.IGNORECASE)
_TOKEN = re.compile(r"\s*\S+\s*")
_LETTERS = "ABCD"


@dataclass(frozen=True)
class Reply:
    """The assistant's answer, cut into the tokens a stream sends."""

    content: str
    tokens: list[str]
    prompt_tokens: int

    @property
    def usage(self) -> dict[str, int]:
        completion = len(self.tokens)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


def text_of(message: Any) -> str:
    """The text of one chat message, whether `content` is a string or a list of parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") if isinstance(p, dict) else p for p in content]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def collapse(text: str) -> str:
    return " ".join(text.split())


def split_tokens(text: str) -> list[str]:
    """Cut `text` into words, each keeping the whitespace after it; joined they give `text`."""
    tokens = _TOKEN.findall(text)
    if not tokens and text:
        return [text]
    return tokens


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return text_of(message)
    return ""


def default_text(messages: list[Any]) -> str:
    echoed = collapse(last_user_text(messages))[:ECHO_LIMIT].rstrip()
    return f"You said: {echoed}".rstrip()


def question_count(messages: list[Any]) -> int:
    """The number of questions the prompt asks for: the last user message first, then all."""
    texts = [last_user_text(messages), *(text_of(m) for m in messages)]
    for text in texts:
        for found in _QUESTION_COUNT.finditer(text):
            count = int(found.group(1))
            if 1 <= count <= MAX_QUESTIONS:
                return count
    return DEFAULT_QUESTIONS


def quiz(messages: list[Any]) -> dict[str, Any]:
    """A valid quiz whose size follows the prompt."""
    topic = collapse(last_user_text(messages))[:TOPIC_LIMIT]
    questions = []
    for i in range(question_count(messages)):
        number = i + 1
        answer = i % 4
        questions.append(
            {
                "question": f"Question {number} about {topic}?",
                "options": [f"Answer {letter} to question {number}" for letter in _LETTERS],
                "answer_index": answer,
                "explanation": f"Answer {_LETTERS[answer]} is correct for question {number}.",
            }
        )
    return {"topic": topic, "questions": questions}


def wants_json(payload: dict[str, Any]) -> bool:
    response_format = payload.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in JSON_FORMATS


def compose(payload: dict[str, Any], behaviour: Behaviour) -> Reply:
    """The reply to a valid request: `tokens`, then `content`, `reply`, quiz, default echo."""
    messages: list[Any] = payload["messages"]
    prompt_tokens = sum(len(text_of(m).split()) for m in messages)
    if behaviour.tokens is not None:
        tokens = [f"tok{i} " for i in range(behaviour.tokens)]
        return Reply(content="".join(tokens), tokens=tokens, prompt_tokens=prompt_tokens)
    if behaviour.content is not None:
        text = behaviour.content
    elif behaviour.reply is not None:
        text = behaviour.reply
    elif wants_json(payload):
        text = json.dumps(quiz(messages), ensure_ascii=False)
    else:
        text = default_text(messages)
    return Reply(content=text, tokens=split_tokens(text), prompt_tokens=prompt_tokens)
