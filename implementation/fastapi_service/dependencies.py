"""Shared route dependencies and the OpenAPI description of their errors."""

from __future__ import annotations

import email.message
import re
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from fastapi_service.core.config import Settings
from fastapi_service.core.llm import LLMClient
from fastapi_service.core.problems import PROBLEM_MEDIA_TYPE

# Enforcement is the middleware's job (before the body is read); this only declares the
# scheme, so /openapi.json carries securitySchemes and per-operation security.
internal_secret = APIKeyHeader(
    name="X-Internal-Secret",
    auto_error=False,
    scheme_name="InternalSecret",
    description="The secret shared by the gateway and the service.",
)
SECURED = [Security(internal_secret)]

_USER_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_llm(request: Request) -> LLMClient:
    return request.app.state.llm


def user_id(
    x_user_id: Annotated[
        str | None,
        Header(
            alias="X-User-Id",
            description=(
                "The gateway's user id, passed to the LLM as the OpenAI `user` field. "
                "Up to 128 characters of `A-Za-z0-9_.:@-`; any other value is ignored."
            ),
        ),
    ] = None,
) -> str | None:
    """The caller's user id when it is well-formed; a bad one is dropped, not an error."""
    if x_user_id is not None and _USER_ID.fullmatch(x_user_id):
        return x_user_id
    return None


def require_json(request: Request) -> None:
    """415 for a JSON route called with another content type (before body errors)."""
    content_type = request.headers.get("content-type", "")
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    if message.get_content_maintype() != "application" or not (
        subtype == "json" or subtype.endswith("+json")
    ):
        raise HTTPException(415, "The request body must be application/json.")


SettingsDep = Annotated[Settings, Depends(get_settings)]
LLMDep = Annotated[LLMClient, Depends(get_llm)]
UserDep = Annotated[str | None, Depends(user_id)]

_DESCRIPTIONS = {
    400: "The request body cannot be parsed (invalid JSON or multipart).",
    401: "`X-Internal-Secret` is missing or empty.",
    403: "`X-Internal-Secret` is wrong, repeated or not ASCII.",
    413: "The request body (or the file) is too large.",
    415: "Unsupported content type.",
    422: "The request does not match the schema.",
    502: "The LLM failed, is unreachable, or gave an unusable answer.",
    503: "The LLM is rate limiting (see `Retry-After`).",
    504: "The LLM did not answer within the service's LLM timeout.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses, as problem+json."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        schema = "ValidationProblem" if status == 422 else "Problem"
        entry: dict[str, Any] = {
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
        if status == 503:
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "schema": {"type": "integer", "minimum": 0},
                }
            }
        responses[status] = entry
    return responses
