"""harness.spec: the proxied routes and their bodies come out of spec/ as the suites need them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest

from harness.spec import ProxiedRoute, SpecError, load, proxied_routes, route

#: The proxied routes of spec/gateway.openapi.yaml: (path, upstream, streams, uploads).
EXPECTED = {
    "chat": ("/api/chat/", "/chatbot/", False, False),
    "chat_stream": ("/api/chat/stream/", "/chatbot/stream/", True, False),
    "chat_file": ("/api/chat/file/", "/chatbot/file/", False, True),
    "quiz_generate": ("/api/quiz/generate/", "/quiz/", False, False),
}

DOCUMENT = """
openapi: 3.1.0
info: {title: t, version: "1"}
paths:
  /api/chat/:
    post:
      operationId: chat
      x-upstream: /chatbot/
      requestBody: {$ref: "#/components/requestBodies/Chat"}
      responses:
        "200": {$ref: "#/components/responses/Answer"}
  /api/chat/stream/:
    post:
      operationId: chat_stream
      x-upstream: /chatbot/stream/
      requestBody: {$ref: "#/components/requestBodies/Chat"}
      responses:
        "200":
          description: a stream
          content: {text/event-stream: {schema: {type: string}}}
  /api/old/:
    post:
      operationId: old_chat
      x-upstream: /chatbot/
      x-optional: true
      requestBody: {$ref: "#/components/requestBodies/Chat"}
      responses:
        "200": {$ref: "#/components/responses/Answer"}
  /api/auth/me/:
    get:
      operationId: auth_me
      responses: {"200": {description: not proxied}}
components:
  requestBodies:
    Chat:
      content: {application/json: {schema: {type: object}}}
    Summary:
      content: {application/json: {schema: {type: object}}}
  responses:
    Answer:
      description: JSON
      content: {application/json: {schema: {type: object}}}
"""

EXAMPLES = """
Chat:
  application/json:
    message: "hello {token}"
"""

SUMMARIZE = """
  /api/chat/summarize/:
    post:
      operationId: chat_summarize
      x-upstream: /chatbot/summarize/
      requestBody: {$ref: "#/components/requestBodies/Summary"}
      responses:
        "200": {$ref: "#/components/responses/Answer"}
"""


def write(tmp_path: Path, document: str = DOCUMENT, examples: str = EXAMPLES) -> tuple[Path, Path]:
    doc, ex = tmp_path / "gateway.openapi.yaml", tmp_path / "examples.yaml"
    doc.write_text(textwrap.dedent(document), encoding="utf-8")
    ex.write_text(textwrap.dedent(examples), encoding="utf-8")
    return doc, ex


def with_summarize(document: str = DOCUMENT) -> str:
    return document.replace("\n  /api/auth/me/:", SUMMARIZE.rstrip("\n") + "\n  /api/auth/me/:")


def message_of(error: pytest.ExceptionInfo[SpecError]) -> str:
    return str(error.value)


# -- the real spec --------------------------------------------------------------------------------
def test_the_real_spec_gives_the_known_routes_with_their_upstream_and_kind() -> None:
    """A subset check: a route added to the spec must not need this test edited."""
    got = {r.operation_id: (r.path, r.upstream, r.streams, r.uploads) for r in proxied_routes()}
    assert got.items() >= EXPECTED.items(), got
    assert all(r.method == "POST" and not r.optional for r in proxied_routes())


def test_filters_select_by_kind() -> None:
    every = proxied_routes()
    assert proxied_routes(streams=True) == tuple(r for r in every if r.streams)
    assert proxied_routes(uploads=True) == tuple(r for r in every if r.uploads)
    plain = proxied_routes(uploads=False, streams=False)
    assert plain == tuple(r for r in every if not r.uploads and not r.streams)
    assert {"chat_stream"} <= {r.operation_id for r in proxied_routes(streams=True)}
    assert {"chat_file"} <= {r.operation_id for r in proxied_routes(uploads=True)}
    assert {"chat", "quiz_generate"} <= {r.operation_id for r in plain}


def test_optional_operations_of_the_real_spec_are_only_in_the_full_list() -> None:
    everything = proxied_routes(include_optional=True)
    optional = [r for r in everything if r.optional]
    assert not set(optional) & set(proxied_routes())
    assert [r for r in everything if not r.optional] == list(proxied_routes())
    for each in optional:
        assert route(each.operation_id) == each  # still reachable by name


def test_a_json_route_builds_its_example_with_the_token() -> None:
    quiz = route("quiz_generate")
    assert quiz.request_body == "Quiz"
    payload = quiz.payload("tok-1")
    assert payload == {"json": {"topic": "HTTP tok-1", "num_questions": 3, "difficulty": "easy"}}
    with httpx.Client(base_url="http://gw.test") as client:
        request = quiz.build(client, "tok-1", headers=[("X-A", "1"), ("X-A", "2")])
    assert (request.method, request.url.path) == ("POST", "/api/quiz/generate/")
    assert request.headers.get_list("x-a") == ["1", "2"]
    assert json.loads(request.read()) == payload["json"]
    body, content_type = quiz.encode("tok-1")
    assert content_type == "application/json"
    assert json.loads(body) == payload["json"]


def test_an_upload_route_builds_a_multipart_body_with_the_token() -> None:
    upload = route("chat_file")
    assert upload.payload("tok-2") == {
        "data": {"message": "summarise tok-2"},
        "files": {"file": ("notes.txt", b"notes for tok-2\n", "text/plain")},
    }
    body, content_type = upload.encode("tok-2")
    assert content_type.startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="notes.txt"' in body
    assert b"Content-Type: text/plain" in body
    assert b"notes for tok-2\n" in body
    assert b"summarise tok-2" in body


def test_a_route_reads_as_its_operation_id() -> None:
    assert str(route("chat_stream")) == "chat_stream"
    assert isinstance(route("chat"), ProxiedRoute)


def test_an_unknown_operation_is_one_precise_error() -> None:
    with pytest.raises(SpecError) as error:
        route("chat_summarise")
    assert message_of(error).startswith(
        "spec/gateway.openapi.yaml: no proxied operation 'chat_summarise' (x-upstream); known: "
    )


# -- documents of the test's own --------------------------------------------------------------
def test_an_optional_operation_is_left_out_of_the_default_list(tmp_path: Path) -> None:
    spec = load(*write(tmp_path))
    assert [r.operation_id for r in proxied_routes(spec=spec)] == ["chat", "chat_stream"]
    every = proxied_routes(spec=spec, include_optional=True)
    assert [r.operation_id for r in every] == ["chat", "chat_stream", "old_chat"]
    assert route("old_chat", spec=spec).optional


def test_a_response_reference_is_followed_to_tell_a_stream(tmp_path: Path) -> None:
    spec = load(*write(tmp_path))
    assert not route("chat", spec=spec).streams  # 200 is a $ref to a JSON answer
    assert route("chat_stream", spec=spec).streams


def test_a_new_route_reusing_a_request_body_needs_no_new_example(tmp_path: Path) -> None:
    document = with_summarize().replace("requestBodies/Summary", "requestBodies/Chat")
    spec = load(*write(tmp_path, document))
    summarize = route("chat_summarize", spec=spec)
    assert summarize.upstream == "/chatbot/summarize/"
    assert summarize.payload("t") == {"json": {"message": "hello t"}}
    assert summarize in proxied_routes(spec=spec)


def test_a_proxied_operation_without_an_example_fails_loudly(tmp_path: Path) -> None:
    doc, examples = write(tmp_path, with_summarize())
    with pytest.raises(SpecError) as error:
        load(doc, examples)
    assert message_of(error) == (
        f"{examples}: no example for request body 'Summary', used by proxied operation "
        "'chat_summarize' (POST /api/chat/summarize/)"
    )


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        pytest.param(
            "Chat:\n  application/json:\n    message: hello\n",
            "Chat: no {token} in any string value (tests select by it)",
            id="no-token",
        ),
        pytest.param(
            "Chat:\n  text/plain: 'hi {token}'\n",
            "Chat: unknown media type 'text/plain' (application/json or multipart/form-data)",
            id="media-type",
        ),
        pytest.param(
            "Chat:\n  multipart/form-data:\n    fields: {message: 'hi {token}'}\n",
            "Chat: multipart/form-data is not a media type of "
            "#/components/requestBodies/Chat (application/json)",
            id="not-the-components-type",
        ),
        pytest.param(
            "Chat:\n  multipart/form-data:\n    files: {file: {filename: a.txt}}\n",
            "Chat: file 'file' needs exactly ['content_type', 'filename', 'text']",
            id="file-part",
        ),
    ],
)
def test_a_bad_example_is_one_precise_error(tmp_path: Path, examples: str, message: str) -> None:
    doc, path = write(tmp_path, examples=examples)
    with pytest.raises(SpecError) as error:
        load(doc, path)
    assert message_of(error) == f"{path}: {message}"


def test_a_proxied_operation_needs_a_request_body_component(tmp_path: Path) -> None:
    document = DOCUMENT.replace(
        '      x-upstream: /chatbot/\n      requestBody: {$ref: "#/components/requestBodies/Chat"}',
        "      x-upstream: /chatbot/\n      requestBody: {content: {application/json: {}}}",
        1,
    )
    doc, examples = write(tmp_path, document)
    with pytest.raises(SpecError) as error:
        load(doc, examples)
    assert message_of(error) == (
        f"{doc}: POST /api/chat/: a proxied operation's requestBody must be a $ref to "
        "#/components/requestBodies/*"
    )
