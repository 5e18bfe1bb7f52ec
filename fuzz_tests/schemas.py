"""The two OpenAPI documents as schemathesis schemas, with the run's credentials.

Both load with the settings in /schemathesis.toml (seed, generation modes, examples,
checks). An auth provider (rather than headers passed per call) tells schemathesis
the credentials are explicit and valid, which its ``ignored_auth`` check relies on.

schemathesis builds the coverage-phase cases at collection time, before any fixture
has started the system, and applies the auth to them then. So the service's secret
is drawn here, at import (the ``secret`` fixture hands the same value to the
harness), and the gateway's session, which needs a running gateway to log in, is
applied as placeholders that :func:`apply_session` replaces just before each call.
"""

from __future__ import annotations

import email.parser
import email.policy
import secrets
from dataclasses import dataclass
from typing import Any

import jsonschema
import schemathesis
from schemathesis import AuthContext, Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from harness.client import Session
from harness.system import REPO

# The upload parts' declared types: sent as the raw bytes schemathesis generated, like
# any file (schemathesis has no serializer of its own for these two).
for _media_type in ("application/pdf", "text/markdown"):
    schemathesis.serializer.alias(_media_type, "application/octet-stream")

CONFIG = SchemathesisConfig.from_path(REPO / "schemathesis.toml")
SERVICE_SCHEMA = schemathesis.openapi.from_path(
    REPO / "spec" / "service.openapi.yaml", config=CONFIG
)
GATEWAY_SCHEMA = schemathesis.openapi.from_path(
    REPO / "spec" / "gateway.openapi.yaml", config=CONFIG
)


def multipart_fields(content_type: str, body: bytes) -> dict[str, str] | None:
    """The fields of a multipart/form-data body as the server sees them: text."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload.decode("utf-8", errors="replace")
    return fields


def _valid_on_the_wire(case: Case, response: Response) -> bool:
    """Whether a negative multipart case reached the server as a valid request after all.

    On the wire every multipart field is text: schemathesis's negative "object" or
    "null" for a string field is sent as the text ``{}`` or ``null``, which is a
    perfectly valid string. Such a case says nothing about the server's validation,
    so it is judged by what was sent, against the body schema.
    """
    if case.media_type != "multipart/form-data":
        return False
    request = response.request
    body = request.body
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes):
        return False
    fields = multipart_fields(request.headers.get("Content-Type", ""), body)
    if fields is None:
        return False
    body_schema = _body_schema(case)
    return body_schema is not None and jsonschema.Draft202012Validator(body_schema).is_valid(fields)


def _body_schema(case: Case) -> dict[str, Any] | None:
    for body in case.operation.body:
        if body.media_type == case.media_type:
            schema = body.definition.get("schema")
            return schema if isinstance(schema, dict) and "$ref" not in schema else None
    return None


def negative_data_rejection_on_the_wire(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """``negative_data_rejection``, except for cases that were valid as sent (see above)."""
    negative = case.meta is not None and case.meta.generation.mode.is_negative
    if negative and _valid_on_the_wire(case, response):
        return None
    return negative_data_rejection(ctx, response, case)


#: The checks FUZZ-1 and FUZZ-2 name, passed explicitly so none is silently left out.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection_on_the_wire,
    missing_required_header,
    ignored_auth,
]

#: Examples per operation in the fuzzing phase (FUZZ-1: at least 200).
MAX_EXAMPLES = CONFIG.projects.get_default().generation.max_examples or 0


#: Stand-ins for the session's values until the gateway is up (see the module docstring).
SESSION_PLACEHOLDER = "pending-login"


@dataclass
class Credentials:
    #: Never starting with "-": the fake service's command line would read it as an option.
    secret: str
    session: Session | None = None


CREDENTIALS = Credentials(secret="s" + secrets.token_urlsafe(32))


# retry_on=[]: these credentials never expire, so a 401 is the server's real answer
# (wrong password at login, say), not a cue to re-authenticate and replay the request.
@SERVICE_SCHEMA.auth(retry_on=[])
class InternalSecret:
    """The shared secret, as the gateway sends it."""

    def get(self, case: Case, ctx: AuthContext) -> str:
        return CREDENTIALS.secret

    def set(self, case: Case, data: str, ctx: AuthContext) -> None:
        case.headers = {**(case.headers or {}), "X-Internal-Secret": data}


@GATEWAY_SCHEMA.auth(retry_on=[])
class BrowserSession:
    """A logged-in browser: both cookies and the CSRF token header."""

    def get(self, case: Case, ctx: AuthContext) -> str:
        return SESSION_PLACEHOLDER

    def set(self, case: Case, data: str, ctx: AuthContext) -> None:
        case.cookies = {**(case.cookies or {}), "sessionid": data, "csrftoken": data}
        case.headers = {**(case.headers or {}), "X-CSRFToken": data}


def apply_session(case: Case, session: Session) -> None:
    """Replace the placeholders :class:`BrowserSession` left with the session's values.

    Only placeholders: a value a negative or probe case changed or removed stays so.
    """
    real = {cookie.name: cookie.value for cookie in session.cookies.jar}
    real["X-CSRFToken"] = session.csrf
    for values in (case.cookies, case.headers):
        if not values:
            continue
        for name, value in list(values.items()):
            if value == SESSION_PLACEHOLDER and name in real:
                values[name] = real[name]
