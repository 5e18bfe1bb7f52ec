"""The gateway's proxied routes as the suites call them, read from spec/.

Routes come from spec/gateway.openapi.yaml (every operation with ``x-upstream``), their
sample bodies from spec/examples.yaml (one per request body component); see
harness/README.md. The document is read once per process.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
GATEWAY_DOCUMENT = ROOT / "spec" / "gateway.openapi.yaml"
SERVICE_DOCUMENT = ROOT / "spec" / "service.openapi.yaml"
EXAMPLES = ROOT / "spec" / "examples.yaml"

#: Where a test's token goes in an example's string values.
TOKEN = "{token}"  # noqa: S105 (a placeholder, not a password)
JSON = "application/json"
MULTIPART = "multipart/form-data"
EVENT_STREAM = "text/event-stream"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

Headers = Mapping[str, str] | list[tuple[str, str]] | None


class SpecError(Exception):
    """spec/ does not say what the suites need; the message names the file and the place."""


@dataclass(frozen=True)
class Example:
    """A valid body of one request body component, with ``{token}`` placeholders."""

    component: str
    media_type: str  # JSON or MULTIPART
    body: Any  # JSON: the value; MULTIPART: {"fields": {...}, "files": {name: {...}}}

    def json(self, token: str) -> Any:
        return _fill(self.body, token)

    def fields(self, token: str) -> dict[str, str]:
        return _fill(dict(self.body.get("fields") or {}), token)

    def files(self, token: str) -> dict[str, tuple[str, bytes, str]]:
        """name -> (filename, content, content type), as httpx takes them."""
        return {
            name: (part["filename"], _fill(part["text"], token).encode(), part["content_type"])
            for name, part in (self.body.get("files") or {}).items()
        }

    def instance(self, token: str) -> Any:
        """What the component's schema describes: the JSON body, or the form fields plus
        each file's text (a ``format: binary`` string)."""
        if self.media_type == JSON:
            return self.json(token)
        files = {name: content.decode() for name, (_, content, _) in self.files(token).items()}
        return {**self.fields(token), **files}


@dataclass(frozen=True)
class ProxiedRoute:
    """A gateway operation proxied to the service, and how to call it validly."""

    operation_id: str
    method: str  # upper case
    path: str
    upstream: str  # the service path (x-upstream)
    streams: bool  # its 200 answer is text/event-stream
    uploads: bool  # its body is multipart/form-data
    optional: bool  # x-optional: not in the default list of proxied_routes()
    request_body: str  # the components/requestBodies name
    example: Example = field(compare=False)  # hashed and compared by the fields above

    def __str__(self) -> str:
        return self.operation_id

    def payload(self, token: str) -> dict[str, Any]:
        """httpx keyword arguments of a valid body with ``token`` in it."""
        if self.uploads:
            return {"data": self.example.fields(token), "files": self.example.files(token)}
        return {"json": self.example.json(token)}

    def build(self, client: httpx.Client, token: str, *, headers: Headers = None) -> httpx.Request:
        """A valid request with ``token`` in its body, built but not sent.

        ``headers`` replace the client's headers of the same name; a list of pairs keeps
        duplicates, in order.
        """
        return client.build_request(self.method, self.path, headers=headers, **self.payload(token))

    def call(self, client: httpx.Client, token: str, *, headers: Headers = None) -> httpx.Response:
        """The same request, sent; the answer read to its end."""
        return client.send(self.build(client, token, headers=headers))

    def encode(self, token: str) -> tuple[bytes, str]:
        """The body's bytes and its Content-Type, for raw sockets and load generators."""
        request = httpx.Request(self.method, f"http://gateway{self.path}", **self.payload(token))
        return request.read(), request.headers["content-type"]


@dataclass(frozen=True)
class GatewaySpec:
    source: Path
    document: dict[str, Any]
    examples: dict[str, Example]
    #: Every operation with x-upstream, optional ones included, in document order.
    routes: tuple[ProxiedRoute, ...]


def load(document: Path = GATEWAY_DOCUMENT, examples: Path = EXAMPLES) -> GatewaySpec:
    """Read the gateway document and the examples; any gap is one SpecError."""
    doc = _read_yaml(document)
    found = _read_examples(examples, _read_yaml(examples))
    routes = []
    for path, item in (doc.get("paths") or {}).items():
        for method in METHODS:
            operation = item.get(method)
            if isinstance(operation, dict) and "x-upstream" in operation:
                routes.append(_route(document, examples, doc, found, path, method, operation))
    return GatewaySpec(document, doc, found, tuple(routes))


@functools.cache
def gateway_spec() -> GatewaySpec:
    """spec/ as the suites use it, loaded once."""
    return load()


def proxied_routes(
    *,
    streams: bool | None = None,
    uploads: bool | None = None,
    include_optional: bool = False,
    spec: GatewaySpec | None = None,
) -> tuple[ProxiedRoute, ...]:
    """The routes every implementation serves (not ``x-optional``), optionally filtered."""
    return tuple(
        r
        for r in (spec or gateway_spec()).routes
        if (include_optional or not r.optional)
        and (streams is None or r.streams == streams)
        and (uploads is None or r.uploads == uploads)
    )


def route(operation_id: str, *, spec: GatewaySpec | None = None) -> ProxiedRoute:
    """The proxied route of ``operation_id`` (optional ones too)."""
    spec = spec or gateway_spec()
    routes = spec.routes
    for candidate in routes:
        if candidate.operation_id == operation_id:
            return candidate
    known = ", ".join(r.operation_id for r in routes)
    raise SpecError(
        f"{_show(spec.source)}: no proxied operation {operation_id!r} (x-upstream); known: {known}"
    )


@dataclass(frozen=True)
class TrustedHeaders:
    """The request headers the service believes, which only a gateway may set (GW-PROXY-3)."""

    #: ``info.x-trusted-headers`` of the service document.
    names: tuple[str, ...]
    #: ``info.x-gateway-only-prefixes``: no client value of such a header reaches the service.
    prefixes: tuple[str, ...]


@functools.cache
def trusted_headers(document: Path = SERVICE_DOCUMENT) -> TrustedHeaders:
    """What spec/service.openapi.yaml says the service trusts; a gap is one SpecError."""
    info = _read_yaml(document).get("info") or {}
    found = {}
    for key in ("x-trusted-headers", "x-gateway-only-prefixes"):
        value = info.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise SpecError(f"{_show(document)}: info.{key} must be a list of header names")
        found[key] = tuple(value)
    return TrustedHeaders(found["x-trusted-headers"], found["x-gateway-only-prefixes"])


# -- reading ------------------------------------------------------------------------------------
def _show(path: Path) -> str:
    """``path`` as error messages name it: relative to the checkout when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{_show(path)}: cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{_show(path)}: is not a mapping")
    return data


def _read_examples(path: Path, raw: dict[str, Any]) -> dict[str, Example]:
    found = {}
    for component, entry in raw.items():
        where = f"{_show(path)}: {component}"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise SpecError(f"{where}: must hold exactly one media type ({JSON} or {MULTIPART})")
        ((media_type, body),) = entry.items()
        if media_type == MULTIPART:
            _check_multipart(where, body)
        elif media_type != JSON:
            raise SpecError(f"{where}: unknown media type {media_type!r} ({JSON} or {MULTIPART})")
        if not any(TOKEN in text for text in _strings(body)):
            raise SpecError(f"{where}: no {TOKEN} in any string value (tests select by it)")
        found[component] = Example(component, media_type, body)
    return found


def _check_multipart(where: str, body: Any) -> None:
    if not isinstance(body, dict) or set(body) - {"fields", "files"}:
        raise SpecError(f"{where}: {MULTIPART} takes `fields` and `files` only")
    for name, value in (body.get("fields") or {}).items():
        if not isinstance(value, str):
            raise SpecError(f"{where}: field {name!r} must be a string")
    for name, part in (body.get("files") or {}).items():
        keys = {"filename", "content_type", "text"}
        if not isinstance(part, dict) or set(part) != keys:
            raise SpecError(f"{where}: file {name!r} needs exactly {sorted(keys)}")


def _route(
    document: Path,
    examples_path: Path,
    doc: dict[str, Any],
    examples: dict[str, Example],
    path: str,
    method: str,
    operation: dict[str, Any],
) -> ProxiedRoute:
    op_id = operation.get("operationId")
    where = f"{_show(document)}: {method.upper()} {path}"
    if not op_id:
        raise SpecError(f"{where}: a proxied operation (x-upstream) needs an operationId")
    upstream = operation["x-upstream"]
    if not isinstance(upstream, str) or not upstream.startswith("/"):
        raise SpecError(f"{where}: x-upstream must be a service path starting with /")
    ref = (operation.get("requestBody") or {}).get("$ref", "")
    prefix = "#/components/requestBodies/"
    if not ref.startswith(prefix):
        raise SpecError(f"{where}: a proxied operation's requestBody must be a $ref to {prefix}*")
    component = ref.removeprefix(prefix)
    content = _resolve(doc, ref, where).get("content") or {}
    example = examples.get(component)
    if example is None:
        raise SpecError(
            f"{_show(examples_path)}: no example for request body {component!r}, used by "
            f"proxied operation {op_id!r} ({method.upper()} {path})"
        )
    if example.media_type not in content:
        raise SpecError(
            f"{_show(examples_path)}: {component}: {example.media_type} is not a media type of "
            f"{ref} ({', '.join(content)})"
        )
    answer = ((operation.get("responses") or {}).get("200")) or {}
    answer = _resolve(doc, answer["$ref"], where) if "$ref" in answer else answer
    return ProxiedRoute(
        operation_id=op_id,
        method=method.upper(),
        path=path,
        upstream=upstream,
        streams=EVENT_STREAM in (answer.get("content") or {}),
        uploads=example.media_type == MULTIPART,
        optional=operation.get("x-optional") is True,
        request_body=component,
        example=example,
    )


def _resolve(doc: dict[str, Any], ref: str, where: str) -> dict[str, Any]:
    """A local ``#/...`` reference of the document."""
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise SpecError(f"{where}: {ref} does not resolve")
        node = node[part]
    if not isinstance(node, dict):
        raise SpecError(f"{where}: {ref} is not an object")
    return node


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _fill(value: Any, token: str) -> Any:
    """``value`` with every ``{token}`` in its strings replaced by ``token``."""
    if isinstance(value, str):
        return value.replace(TOKEN, token)
    if isinstance(value, dict):
        return {key: _fill(item, token) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, token) for item in value]
    return value
