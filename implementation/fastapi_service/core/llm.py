"""A small OpenAI-compatible chat-completions client over one pooled `httpx.AsyncClient`.

We speak the wire protocol directly instead of using the openai SDK: it would bring a
second HTTP stack and its own retries, and we need to control exactly how failures map
to statuses and how a cancelled request closes the LLM connection (`client.stream()`
closes the response in a `finally`, and an HTTP/1.1 response closed before its end
closes the connection, which the LLM sees as an abort).
"""

from __future__ import annotations

import functools
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from fastapi_service.core.config import Settings
from fastapi_service.core.metrics import LLMCall, Operation

logger = logging.getLogger("fastapi_service")

KEEPALIVE_EXPIRY = 4.0  # below uvicorn's default 5 s keep-alive, so we never reuse a closed one
MAX_CONNECTIONS = 256
MAX_KEEPALIVE_CONNECTIONS = 32
MAX_STREAM_LINES = 500_000  # bounds a runaway stream; far above any real answer
MAX_RETRY_AFTER = 3600

Message = dict[str, str]


@dataclass(frozen=True)
class Usage:
    """Token counts as the LLM reports them (zeros when it reports none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_payload(cls, payload: Any) -> Usage:
        if not isinstance(payload, dict):
            return cls()
        counts = [payload.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")]
        prompt, completion, total = (c if type(c) is int and c >= 0 else 0 for c in counts)
        return cls(prompt, completion, total or prompt + completion)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Completion:
    """A whole (non-streamed) answer."""

    text: str
    usage: Usage


StreamItem = str | Usage


class LLMError(Exception):
    """A failure of the LLM, already mapped to the status the service answers with."""

    status = 502
    title = "Bad Gateway"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class LLMUnavailable(LLMError):
    """Unreachable, broken connection, server error, or an answer we cannot parse."""


class LLMTimeout(LLMError):
    """No answer (or no next chunk) within LLM_TIMEOUT."""

    status = 504
    title = "Gateway Timeout"


class LLMRateLimited(LLMError):
    """The LLM (or our own pool towards it) is saturated; try again later."""

    status = 503
    title = "Service Unavailable"

    def __init__(self, detail: str, *, retry_after: str = "1") -> None:
        super().__init__(detail, headers={"Retry-After": retry_after})


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~40 ms; one read-only context serves every client.
    return httpx.create_ssl_context()


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    """The one pooled client of an app; created in the lifespan, closed on shutdown."""
    return httpx.AsyncClient(
        verify=_ssl_context(),
        timeout=httpx.Timeout(settings.llm_timeout),
        limits=httpx.Limits(
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        ),
        # Proxy variables from the environment must not reroute LLM traffic.
        trust_env=False,
        follow_redirects=False,
    )


class LLMClient:
    """Chat completions against `{base_url}/chat/completions`."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self._http = http
        self._url = f"{settings.llm_base_url.rstrip('/')}/chat/completions"
        self._model = settings.llm_model
        self._headers = {"Accept": "application/json"}
        if settings.llm_api_key:
            self._headers["Authorization"] = f"Bearer {settings.llm_api_key}"

    def _payload(
        self,
        messages: Sequence[Message],
        *,
        user: str | None,
        stream: bool,
        response_format: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._model,
            "messages": list(messages),
            "stream": stream,
        }
        if stream:
            payload["stream_options"] = {"include_usage": True}
        if user is not None:
            payload["user"] = user
        if response_format is not None:
            payload["response_format"] = response_format
        return payload

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        operation: Operation,
        user: str | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:
        """One whole answer; raises an `LLMError` subclass on any failure.

        ``operation`` is what the call is for (``chat``, ``quiz``), as its metrics count it.
        """
        payload = self._payload(messages, user=user, stream=False, response_format=response_format)
        with LLMCall(operation) as call:
            completion = await self._complete(payload)
            call.finish(completion.usage)
        return completion

    async def _complete(self, payload: dict[str, Any]) -> Completion:
        try:
            response = await self._http.post(self._url, json=payload, headers=self._headers)
        except httpx.HTTPError as exc:
            raise _map_transport_error(exc) from exc
        _raise_for_status(response)
        _require_content_type(response, _is_json, "JSON")
        try:
            body = response.json()
            content = body["choices"][0]["message"]["content"]
        except (ValueError, LookupError, TypeError):
            raise LLMUnavailable("The LLM answered with a malformed completion.") from None
        if not isinstance(content, str):
            raise LLMUnavailable("The LLM answered without text content.")
        return Completion(text=content, usage=Usage.from_payload(body.get("usage")))

    async def stream(
        self, messages: Sequence[Message], *, user: str | None = None
    ) -> AsyncIterator[StreamItem]:
        """Yield text deltas as they arrive, then the `Usage`.

        Raises an `LLMError` subclass on any failure. Closing the generator (or
        cancelling the task iterating it) closes the LLM response and its connection,
        and counts the call as cancelled unless the LLM had already finished.
        """
        payload = self._payload(messages, user=user, stream=True)
        headers = {**self._headers, "Accept": "text/event-stream"}
        with LLMCall("stream") as call:
            try:
                async with self._http.stream(
                    "POST", self._url, json=payload, headers=headers
                ) as response:
                    if response.status_code >= 300:
                        _raise_for_status(response)
                    _require_content_type(response, _is_event_stream, "an event stream")
                    usage = Usage()
                    async for item in _parse_sse(response):
                        if isinstance(item, Usage):
                            usage = item
                        else:
                            call.first_token()
                            yield item
                    call.finish(usage)
                    yield usage
            except httpx.HTTPError as exc:
                raise _map_transport_error(exc) from exc


async def _parse_sse(response: httpx.Response) -> AsyncIterator[str | Usage]:
    """Text deltas and usage from OpenAI's `data:` lines, up to `data: [DONE]`."""
    finished = False
    lines = 0
    async for line in response.aiter_lines():
        lines += 1
        if lines > MAX_STREAM_LINES:
            raise LLMUnavailable("The LLM stream is too long.")
        if not line.startswith("data:"):
            continue  # blank separators, comments, `event:`/`id:` fields
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise LLMUnavailable("The LLM sent a malformed stream event.") from None
        if not isinstance(chunk, dict):
            raise LLMUnavailable("The LLM sent a malformed stream event.")
        if "error" in chunk:
            raise LLMUnavailable("The LLM reported an error in the middle of the stream.")
        if chunk.get("usage"):
            yield Usage.from_payload(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                yield text
            if choice.get("finish_reason"):
                finished = True
    # Some servers omit [DONE]; an end without a finish_reason is a cut stream.
    if not finished:
        raise LLMUnavailable("The LLM stream ended before the answer was complete.")


def _raise_for_status(response: httpx.Response) -> None:
    """Map an error status; never copies the LLM's body, which may quote our key."""
    status = response.status_code
    if status < 300:
        return
    if status == 429:
        raise LLMRateLimited(
            "The LLM is rate limiting requests; try again later.",
            retry_after=_retry_after(response.headers.get("retry-after")),
        )
    if status >= 500:
        raise LLMUnavailable(f"The LLM failed with status {status}.")
    raise LLMUnavailable(f"The LLM refused the request with status {status}.")


def _media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _is_event_stream(media_type: str) -> bool:
    return media_type == "text/event-stream"


def _require_content_type(
    response: httpx.Response, accepts: Callable[[str], bool], what: str
) -> None:
    """Refuse an answer of another type (a proxy's HTML page, a JSON body for a stream).

    Parsing it anyway would turn a broken LLM into a "successful" empty or garbled
    answer; the caller gets 502 instead (SVC-LLM-1, FAULT-6).
    """
    if not accepts(_media_type(response)):
        # The LLM's own value is not quoted: it is untrusted text.
        raise LLMUnavailable(f"The LLM answered with an unexpected content type, not {what}.")


def _retry_after(value: str | None) -> str:
    """The LLM's Retry-After when it is a sane number of seconds, else 1."""
    if value is not None and value.strip().isdigit():
        seconds = int(value.strip())
        if 0 <= seconds <= MAX_RETRY_AFTER:
            return str(seconds)
    return "1"


def _map_transport_error(exc: httpx.HTTPError) -> LLMError:
    if isinstance(exc, httpx.PoolTimeout):
        return LLMRateLimited("Too many concurrent LLM requests; try again later.")
    if isinstance(exc, httpx.TimeoutException):
        return LLMTimeout("The LLM did not answer in time.")
    logger.info("LLM transport error: %s", type(exc).__name__)
    return LLMUnavailable("The LLM could not be reached or broke the connection.")
