"""Error bodies: OpenAI's shape under /v1, RFC 9457 problems under /_control."""

from __future__ import annotations

from starlette.responses import JSONResponse

_OPENAI_TYPES = {
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def openai_error(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    code: str | None = None,
    retry_after: str | int | None = None,
) -> JSONResponse:
    """An OpenAI-style error response, as SDKs and the service parse it."""
    default_type, default_code = _OPENAI_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    headers = {"retry-after": str(retry_after)} if retry_after is not None else None
    body = {
        "error": {
            "message": message,
            "type": error_type or default_type,
            "code": code or default_code,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def problem(status: int, title: str, detail: str) -> JSONResponse:
    """An RFC 9457 problem for the control API."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")
