"""Chat routes: one-shot, streamed, and about an uploaded file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from fastapi_service.core.disconnect import until_disconnect
from fastapi_service.core.files import extract_text, safe_name
from fastapi_service.core.llm import Message
from fastapi_service.core.sse import EventStreamResponse, Relay
from fastapi_service.dependencies import (
    SECURED,
    LLMDep,
    SettingsDep,
    UserDep,
    problem_responses,
    require_json,
)
from fastapi_service.schemas import MAX_MESSAGE_CHARS, ChatRequest, ChatResponse, Usage

router = APIRouter(prefix="/chatbot", tags=["chat"], dependencies=SECURED)

ERRORS = problem_responses(400, 401, 403, 413, 415, 422, 502, 503, 504)

FILE_TYPES = "text/plain, text/markdown, application/pdf"

STREAM_DESCRIPTION = """\
Server-sent events, each one complete chunk:

    event: token
    data: {"text": "Hel"}

then exactly one of

    event: done
    data: {"usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}

    event: error
    data: {"type": "about:blank", "title": "Bad Gateway", "status": 502, "detail": "..."}

and `: ping` comments during long silences of the LLM. A failure before the LLM's
first token is answered with its status (502, 503, 504) as problem+json instead.
"""


def _event_schema(name: str, data_schema: str) -> dict[str, object]:
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": f"#/components/schemas/{data_schema}"},
            },
        },
    }


# OpenAPI 3.1 has no `itemSchema`: the `schema` of an event stream describes one event.
STREAM_EVENT = {
    "description": "One server-sent event; `data` is compact JSON on a single line.",
    "oneOf": [
        _event_schema("token", "TokenData"),
        _event_schema("done", "DoneData"),
        _event_schema("error", "Problem"),
    ],
}


def conversation(body: ChatRequest) -> list[Message]:
    """Exactly what the caller sent, in order: the service adds nothing and keeps nothing."""
    messages: list[Message] = [{"role": m.role, "content": m.content} for m in body.history]
    messages.append({"role": "user", "content": body.message})
    return messages


def _reply(text: str, usage_counts: dict[str, int]) -> ChatResponse:
    return ChatResponse(reply=text, usage=Usage(**usage_counts))


@router.post(
    "/",
    summary="Answer a message in one piece",
    operation_id="chat",
    response_model=ChatResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
)
async def chat(body: ChatRequest, request: Request, llm: LLMDep, user: UserDep) -> ChatResponse:
    answer = llm.complete(conversation(body), operation="chat", user=user)
    completion = await until_disconnect(request, answer)
    return _reply(completion.text, completion.usage.as_dict())


@router.post(
    "/stream/",
    summary="Answer a message as a stream of server-sent events",
    operation_id="chat_stream",
    # A plain Response class keeps FastAPI from adding its own 200 content to the
    # event-stream one below; the route returns an EventStreamResponse either way.
    response_class=Response,
    response_description=STREAM_DESCRIPTION,
    responses={
        200: {"content": {"text/event-stream": {"schema": STREAM_EVENT}}},
        **ERRORS,
    },
    dependencies=[Depends(require_json)],
)
async def chat_stream(
    body: ChatRequest, request: Request, llm: LLMDep, user: UserDep, settings: SettingsDep
) -> Response:
    relay = Relay(llm.stream(conversation(body), user=user), ping_interval=settings.ping_interval)
    try:
        await until_disconnect(request, relay.start())
    except BaseException:
        await relay.aclose()
        raise
    return EventStreamResponse(relay.events(), on_close=relay.aclose)


@router.post(
    "/file/",
    summary="Answer a message about an uploaded text, Markdown or PDF file",
    operation_id="chat_file",
    response_model=ChatResponse,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "content": {"multipart/form-data": {"encoding": {"file": {"contentType": FILE_TYPES}}}}
        }
    },
)
async def chat_file(
    file: Annotated[
        UploadFile, File(description="text/plain, text/markdown or application/pdf, up to 10 MiB.")
    ],
    message: Annotated[str, Form(min_length=1, max_length=MAX_MESSAGE_CHARS)],
    request: Request,
    llm: LLMDep,
    user: UserDep,
) -> ChatResponse:
    text = await extract_text(file)
    prompt = f"File {safe_name(file.filename)}:\n{text}\n\nQuestion: {message}"
    messages: list[Message] = [{"role": "user", "content": prompt}]
    # A question about a file is a chat, as far as the LLM metrics go.
    answer = llm.complete(messages, operation="chat", user=user)
    completion = await until_disconnect(request, answer)
    return _reply(completion.text, completion.usage.as_dict())
