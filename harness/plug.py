"""Read and check a plug file: how the suites start an implementation.

A plug file is TOML. It declares a ``[service]`` and a ``[gateway]`` component,
each a command with ``{placeholders}`` that the harness fills in. Every mistake
in it is reported as one precise line (``PlugError``), because the people who
write plug files are plugging in *their* implementation and need to know exactly
which key is wrong.
"""

from __future__ import annotations

import difflib
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Every placeholder a plug file may use, and what the harness puts there.
PLACEHOLDERS: dict[str, str] = {
    "python": "the Python interpreter running the suite (sys.executable)",
    "port": "a free TCP port on 127.0.0.1 for this component",
    "state_dir": "an empty directory private to this component instance",
    "secret": "the shared secret (X-Internal-Secret) for this run",
    "previous_secret": "the previous secret still accepted during rotation, or empty",
    "debug": "'1' when the suite wants the component in debug mode, else '0'",
    "llm_url": "base URL of the OpenAI-compatible LLM, ending in /v1",
    "llm_api_key": "the API key the service must send to the LLM",
    "llm_model": "the model name the service must ask the LLM for",
    "llm_timeout": "seconds the service waits for the LLM (connect and each read)",
    "service_url": "base URL of the internal service the gateway proxies to",
    "cors_origins": "comma-separated origins allowed by CORS (and trusted for CSRF)",
    "connect_timeout": "gateway -> service connect timeout, seconds",
    "read_timeout": "gateway -> service read timeout, seconds",
    "pool_timeout": "seconds a gateway request waits for a pooled connection",
    "max_connections": "the gateway's connection pool size towards the service",
    "max_keepalive": "how many idle connections to the service the gateway may keep",
    "auth_mode": "'secret' (send X-Internal-Secret) or 'hmac' (signed requests, SEC-7/SEC-8)",
    "max_streams_per_user": "the most streams one user may have open at once at the gateway",
    "chat_rate": "per-user rate limit of /api/chat/* as N/s, N/m, N/h or N/d",
    "quiz_rate": "per-user rate limit of /api/quiz/* as N/s, N/m, N/h or N/d",
    "trusted_proxies": "addresses or CIDR networks whose X-Forwarded-* the gateway believes",
    "username": "a test user's name (create_user only)",
    "password": "a test user's password (create_user only)",
}

_TOP_KEYS = {
    "name",
    "description",
    "workdir",
    "known_failures",
    "breaks",
    "suites",
    "service",
    "gateway",
    "baselines",
}
_COMPONENT_KEYS = {"command", "ready", "env", "setup", "create_user", "upstream_http_version"}
_REQUIRED_COMPONENT_KEYS = ("command", "ready")


class PlugError(Exception):
    """A plug file that cannot be used; the message is one line naming the key."""


@dataclass(frozen=True)
class Component:
    """One process of the implementation (the service or the gateway)."""

    name: str
    command: tuple[str, ...]
    ready: str
    env: Mapping[str, str] = field(default_factory=dict)
    setup: tuple[tuple[str, ...], ...] = ()
    create_user: tuple[str, ...] | None = None
    #: The HTTP version the gateway claims to speak to the service (GW-HTTP-1).
    upstream_http_version: str = "1.1"


@dataclass(frozen=True)
class Baseline:
    """Another way to run the gateway, measured beside it by perf_tests (the "before").

    Declared as ``[baselines.NAME]``: any gateway key overrides the gateway's (``env``
    is merged key by key), plus where its chat and stream routes are.
    """

    name: str
    component: Component
    description: str = ""
    chat_path: str = "/api/chat/"
    stream_path: str = "/api/chat/stream/"


_BASELINE_KEYS = {"description", "chat_path", "stream_path"}


@dataclass(frozen=True)
class Plug:
    """A parsed plug file."""

    path: Path
    name: str
    workdir: Path
    service: Component
    gateway: Component
    description: str = ""
    known_failures: Mapping[str, str] = field(default_factory=dict)
    #: For deliberately broken variants (selfcheck): the requirement IDs they break.
    breaks: tuple[str, ...] = ()
    #: For deliberately broken variants: the suite directories that expose them.
    suites: tuple[str, ...] = ()
    #: Other ways to run the gateway that perf_tests compares it with.
    baselines: tuple[Baseline, ...] = ()


def render(template: str, values: Mapping[str, str], *, where: str) -> str:
    """Fill ``{placeholders}`` in ``template``; ``{{`` and ``}}`` are literal braces."""
    try:
        return template.format_map(_StrictValues(values, where))
    except (ValueError, IndexError) as exc:
        raise PlugError(f"{where}: malformed placeholder in {template!r} ({exc})") from None


class _StrictValues(dict[str, str]):
    def __init__(self, values: Mapping[str, str], where: str) -> None:
        super().__init__(values)
        self.where = where

    def __missing__(self, key: str) -> str:
        raise PlugError(f"{self.where}: placeholder {{{key}}} has no value here")


def load_plug(path: str | Path) -> Plug:
    """Parse and check the plug file at ``path``."""
    path = Path(path).resolve()
    label = path.name
    data = _read_with_bases(path, label, depth=0)
    _reject_unknown(data, _TOP_KEYS, label, "")
    name = _string(data, "name", label, "", required=True)
    workdir = Path(_string(data, "workdir", label, "", default="."))
    if not workdir.is_dir():
        raise PlugError(f"{label}: workdir {workdir} is not a directory")

    known = data.get("known_failures", {})
    if not isinstance(known, dict) or not all(isinstance(v, str) for v in known.values()):
        raise PlugError(f"{label}: [known_failures] must map requirement IDs to reason strings")

    return Plug(
        path=path,
        name=name,
        description=_string(data, "description", label, "", default=""),
        workdir=workdir,
        service=_component(data, "service", label),
        gateway=_component(data, "gateway", label),
        known_failures=dict(known),
        breaks=_string_list(data, "breaks", label, ""),
        suites=_string_list(data, "suites", label, ""),
        baselines=_baselines(data, label),
    )


def _baselines(data: dict[str, Any], label: str) -> tuple[Baseline, ...]:
    tables = data.get("baselines", {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise PlugError(f"{label}: [baselines] must hold one table per baseline")
    found = []
    for name, table in tables.items():
        where = f"baselines.{name}"
        own = {k: table[k] for k in _BASELINE_KEYS if k in table}
        overrides = {k: v for k, v in table.items() if k not in _BASELINE_KEYS}
        component = _component({where: _merge(data["gateway"], overrides)}, where, label)
        paths = {k: _string(own, k, label, f"[{where}]") for k in own if k.endswith("_path")}
        for key, value in paths.items():
            if not value.startswith("/"):
                raise PlugError(f"{label}: [{where}].{key} must be a path starting with '/'")
        found.append(Baseline(name, component, own.get("description", ""), **paths))
    return tuple(found)


def _read_with_bases(path: Path, label: str, depth: int) -> dict[str, Any]:
    """The TOML at ``path``, laid over the file it ``extends`` (tables merge key by key).

    ``workdir`` is resolved here, relative to the file that sets it, so a variant in
    another directory keeps its base's working directory unless it sets its own.
    """
    if not path.is_file():
        raise PlugError(f"{path}: no such plug file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PlugError(f"{label}: not valid TOML: {exc}") from None
    own_workdir = "workdir" in data
    data["workdir"] = str((path.parent / str(data.get("workdir", "."))).resolve())
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise PlugError(f"{label}: extends must be a path string")
    if depth >= 4:
        raise PlugError(f"{label}: extends nests deeper than 4 files")
    base = _read_with_bases((path.parent / base_name).resolve(), label, depth + 1)
    if not own_workdir:
        data["workdir"] = base["workdir"]
    return _merge(base, data)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _component(data: dict[str, Any], name: str, label: str) -> Component:
    section = data.get(name)
    if not isinstance(section, dict):
        raise PlugError(f"{label}: missing table [{name}]")
    where = f"[{name}]"
    _reject_unknown(section, _COMPONENT_KEYS, label, where)
    for key in _REQUIRED_COMPONENT_KEYS:
        if key not in section:
            raise PlugError(f"{label}: {where} is missing required key {key!r}")

    command = _string_list(section, "command", label, where)
    if not command:
        raise PlugError(f"{label}: {where}.command must not be empty")
    ready = _string(section, "ready", label, where, required=True)
    if not ready.startswith("/"):
        raise PlugError(f"{label}: {where}.ready must be a path starting with '/'")

    env = section.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise PlugError(f"{label}: {where}.env must be a table of string values")

    setup = section.get("setup", [])
    if not isinstance(setup, list) or not all(_is_string_list(c) and c for c in setup):
        raise PlugError(f"{label}: {where}.setup must be a list of commands (lists of strings)")

    create_user = section.get("create_user")
    if create_user is not None and not (_is_string_list(create_user) and create_user):
        raise PlugError(f"{label}: {where}.create_user must be a list of strings")

    http_version = section.get("upstream_http_version", "1.1")
    if http_version not in ("1.1", "2"):
        raise PlugError(f'{label}: {where}.upstream_http_version must be "1.1" or "2"')

    component = Component(
        name=name,
        upstream_http_version=http_version,
        command=tuple(command),
        ready=ready,
        env=dict(env),
        setup=tuple(tuple(c) for c in setup),
        create_user=tuple(create_user) if create_user else None,
    )
    _check_placeholders(component, label)
    return component


def _check_placeholders(component: Component, label: str) -> None:
    """Fail early, with the key's name, on a placeholder the harness does not know."""
    where = f"[{component.name}]"
    parts: list[tuple[str, str]] = [(f"{where}.command", s) for s in component.command]
    parts += [(f"{where}.env.{k}", v) for k, v in component.env.items()]
    parts += [(f"{where}.setup", s) for cmd in component.setup for s in cmd]
    parts += [(f"{where}.create_user", s) for s in component.create_user or ()]
    for key, text in parts:
        try:
            names = [n for _, n, _, _ in string.Formatter().parse(text) if n is not None]
        except ValueError as exc:
            raise PlugError(f"{label}: {key}: malformed placeholder in {text!r} ({exc})") from None
        for n in names:
            if n not in PLACEHOLDERS:
                hint = difflib.get_close_matches(n, PLACEHOLDERS, n=1)
                extra = f" (did you mean {{{hint[0]}}}?)" if hint else ""
                raise PlugError(f"{label}: {key}: unknown placeholder {{{n}}}{extra}")
            if n in ("username", "password") and not key.endswith("create_user"):
                raise PlugError(f"{label}: {key}: {{{n}}} is only available in create_user")


def _reject_unknown(table: dict[str, Any], allowed: set[str], label: str, where: str) -> None:
    for key in table:
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            prefix = f"{where}." if where else ""
            raise PlugError(f"{label}: unknown key {prefix}{key}{extra}")


def _string(
    table: dict[str, Any],
    key: str,
    label: str,
    where: str,
    *,
    required: bool = False,
    default: str | None = None,
) -> str:
    prefix = f"{where}." if where else ""
    if key not in table:
        if required:
            raise PlugError(f"{label}: missing required key {prefix}{key}")
        return default or ""
    value = table[key]
    if not isinstance(value, str) or (required and not value):
        raise PlugError(f"{label}: {prefix}{key} must be a non-empty string")
    return value


def _string_list(table: dict[str, Any], key: str, label: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not _is_string_list(value):
        prefix = f"{where}." if where else ""
        raise PlugError(f"{label}: {prefix}{key} must be a list of strings")
    return tuple(value)


def _is_string_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
