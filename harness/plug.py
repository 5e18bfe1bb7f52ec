"""Read and check a plug file: how the suites start an implementation.

Every key and placeholder is documented in harness/README.md (a unit test keeps the
two in step). Every mistake is one precise line (``PlugError``): whoever writes a
plug file is plugging in *their* implementation and needs to know which key is wrong.
"""

from __future__ import annotations

import difflib
import functools
import string
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.knobs import KNOBS
from harness.spec import route

#: Every placeholder a plug file may use and what the harness puts there (harness/README.md
#: shows this table; a unit test keeps the two equal).
PLACEHOLDERS: dict[str, str] = {
    "python": "the Python interpreter running the suite (`sys.executable`)",
    "port": "a free TCP port on 127.0.0.1 for this component",
    "metrics_port": "another free TCP port on 127.0.0.1, for this component's metrics "
    "(OPS-METRICS-1)",
    "state_dir": "an empty directory private to this component instance (put the database here)",
    "secret": "the shared secret of the run (`X-Internal-Secret`; the signing key in `hmac` mode)",
    "previous_secret": "the previous secret, still accepted during rotation, or empty (service)",
    "debug": "`1` when a test wants the service in debug mode, else `0` (service)",
    "llm_url": "base URL of the OpenAI-compatible LLM, ending in `/v1` (service)",
    "llm_api_key": "the API key the service must send to the LLM (service)",
    "llm_model": "the model the service must ask the LLM for (service)",
    "llm_timeout": "seconds the service waits for the LLM, to connect and for each read (service)",
    "service_url": "base URL of the internal service the gateway proxies to (gateway)",
    "cors_origins": "comma-separated origins allowed by CORS and trusted for CSRF (gateway)",
    "connect_timeout": "seconds the gateway waits to connect to the service (gateway)",
    "read_timeout": "seconds the gateway waits for each read from the service (gateway)",
    "pool_timeout": "seconds a gateway request waits for a pooled connection (gateway)",
    "max_connections": "the gateway's connection pool size towards the service (gateway)",
    "max_keepalive": "how many idle connections to the service the gateway keeps (gateway)",
    "auth_mode": "`secret` (send `X-Internal-Secret`) or `hmac` (signed requests, SEC-7/8)",
    "max_streams_per_user": "the most streams one user may have open at once (LIMIT-3; gateway)",
    "chat_rate": "per-user rate of `/api/chat/*`: `N/s`, `N/m`, `N/h` or `N/d` (LIMIT-4; gateway)",
    "quiz_rate": "per-user rate of `/api/quiz/*`, written like `{chat_rate}` (LIMIT-4; gateway)",
    "trusted_proxies": "comma-separated addresses or CIDR networks whose `X-Forwarded-*` "
    "the gateway believes; empty: none (gateway)",
    "legacy_views": "`1` to serve the optional legacy routes `/api/legacy/*`, else `0` "
    "(GW-LEGACY-1; gateway)",
    "drain_timeout": "seconds open streams may go on after SIGTERM before each ends with a "
    "503 error event (OPS-DRAIN-2; gateway)",
    "log_format": "`json` for one JSON object a log line (OPS-LOG-1), else `text` (gateway)",
    "username": "a test user's name (only in `create_user`)",
    "password": "a test user's password (only in `create_user`)",
}

#: The keys a plug file may set: at the top, in ``[service]``/``[gateway]``, in a baseline.
TOP_KEYS = frozenset(
    {
        "extends",
        "name",
        "description",
        "known_failures",
        "breaks",
        "suites",
        "service",
        "gateway",
        "baselines",
        "gateway_baseline",
    }
)
COMPONENT_KEYS = frozenset(
    {
        "command",
        "ready",
        "workdir",
        "env",
        "setup",
        "create_user",
        "upstream_http_version",
        "fixed",
        "metrics",
    }
)
BASELINE_KEYS = frozenset({"description", "chat_path", "stream_path"})
_REQUIRED_COMPONENT_KEYS = ("command", "ready")
_COMPONENTS = ("service", "gateway")
#: Keys that moved, and where to.
_MOVED = {"workdir": "set [service].workdir and [gateway].workdir instead"}


class PlugError(Exception):
    """A plug file that cannot be used; the message is one line naming the key."""


@dataclass(frozen=True)
class Component:
    """One process of the implementation (the service or the gateway)."""

    name: str
    command: tuple[str, ...]
    ready: str
    #: Where its commands run (absolute; written relative to the file that holds the table).
    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    setup: tuple[tuple[str, ...], ...] = ()
    create_user: tuple[str, ...] | None = None
    #: The HTTP version the gateway claims to speak to the service (GW-HTTP-1).
    upstream_http_version: str = "1.1"
    #: Knobs it does not let you set, with the value they always have (harness/knobs.py).
    fixed: Mapping[str, str] = field(default_factory=dict)
    #: The URL of its Prometheus metrics, with placeholders (OPS-METRICS-1); None: none.
    metrics: str | None = None

    def templates(self) -> list[tuple[str, str]]:
        """Every string the harness fills in, with the key it stands under (for messages)."""
        where = f"[{self.name}]"
        found = [(f"{where}.command", text) for text in self.command]
        found += [(f"{where}.env.{key}", text) for key, text in self.env.items()]
        found += [(f"{where}.setup", text) for command in self.setup for text in command]
        found += [(f"{where}.create_user", text) for text in self.create_user or ()]
        found += [(f"{where}.metrics", self.metrics)] if self.metrics else []
        return found

    @functools.cached_property
    def placeholders(self) -> frozenset[str]:
        """The placeholder names it uses; the knobs among them are those it honours."""
        return frozenset(
            name
            for _, text in self.templates()
            for _, name, _, _ in string.Formatter().parse(text)
            if name
        )


@dataclass(frozen=True)
class Baseline:
    """Another way to run the gateway, measured beside it by perf_tests (the "before").

    Declared as ``[baselines.NAME]``: any gateway key overrides the gateway's (``env``
    is merged key by key), plus where its chat and stream routes are.
    """

    name: str
    component: Component
    description: str = ""
    chat_path: str = field(default_factory=lambda: route("chat").path)
    stream_path: str = field(default_factory=lambda: route("chat_stream").path)


@dataclass(frozen=True)
class Plug:
    """A parsed plug file."""

    path: Path
    name: str
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
    data, replaced = _read_with_bases(path, depth=0)
    name = _string(data, "name", label, "", required=True)
    baselines = _baselines(data, label)
    gateway = _component(data, "gateway", label, replaced)
    if chosen := _string(data, "gateway_baseline", label, ""):
        gateway = _baseline_as_gateway(baselines, chosen, label)
    known = data.get("known_failures", {})
    if not isinstance(known, dict) or not all(isinstance(v, str) for v in known.values()):
        raise PlugError(f"{label}: [known_failures] must map requirement IDs to reason strings")

    return Plug(
        path=path,
        name=name,
        description=_string(data, "description", label, "", default=""),
        service=_component(data, "service", label, replaced),
        gateway=gateway,
        known_failures=dict(known),
        breaks=_string_list(data, "breaks", label, ""),
        suites=_string_list(data, "suites", label, ""),
        baselines=baselines,
    )


def _baseline_as_gateway(baselines: tuple[Baseline, ...], name: str, label: str) -> Component:
    """``gateway_baseline = "NAME"``: the suites run against that baseline's gateway."""
    for baseline in baselines:
        if baseline.name == name:
            return replace(baseline.component, name="gateway")
    known = ", ".join(b.name for b in baselines) or "none"
    raise PlugError(f"{label}: gateway_baseline {name!r} is not a [baselines] table ({known})")


def _baselines(data: dict[str, Any], label: str) -> tuple[Baseline, ...]:
    tables = data.get("baselines", {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise PlugError(f"{label}: [baselines] must hold one table per baseline")
    found = []
    for name, table in tables.items():
        where = f"baselines.{name}"
        own = {k: table[k] for k in BASELINE_KEYS if k in table}
        overrides = {k: v for k, v in table.items() if k not in BASELINE_KEYS}
        component = _component({where: _merge(data["gateway"], overrides)}, where, label, ())
        paths = {k: _string(own, k, label, f"[{where}]") for k in own if k.endswith("_path")}
        for key, value in paths.items():
            if not value.startswith("/"):
                raise PlugError(f"{label}: [{where}].{key} must be a path starting with '/'")
        found.append(Baseline(name, component, own.get("description", ""), **paths))
    return tuple(found)


def _read_with_bases(path: Path, depth: int) -> tuple[dict[str, Any], set[str]]:
    """The TOML at ``path`` over the file it ``extends``, and the tables it replaced there.

    A key the file sets replaces its base's value whole: a ``[gateway]`` written in a
    variant is the variant's entire gateway, never merged with the base's. Each
    ``workdir`` is resolved here, relative to the file that holds its table.
    """
    label = path.name
    if not path.is_file():
        raise PlugError(f"{path}: no such plug file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PlugError(f"{label}: not valid TOML: {exc}") from None
    _reject_unknown(data, TOP_KEYS, label, "")
    for name in _COMPONENTS:
        if isinstance(data.get(name), dict):
            _resolve_workdir(data[name], path, label, f"[{name}]", default=".")
    baselines = data.get("baselines")
    if isinstance(baselines, dict):
        for name, table in baselines.items():
            if isinstance(table, dict):
                _resolve_workdir(table, path, label, f"[baselines.{name}]", default=None)
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, set()
    if not isinstance(base_name, str):
        raise PlugError(f"{label}: extends must be a path string")
    if depth >= 4:
        raise PlugError(f"{label}: extends nests deeper than 4 files")
    base, replaced_below = _read_with_bases((path.parent / base_name).resolve(), depth + 1)
    replaced = {key for key, value in data.items() if isinstance(value, dict) and key in base}
    return {**base, **data}, replaced | (replaced_below - data.keys())


def _resolve_workdir(
    table: dict[str, Any], path: Path, label: str, where: str, *, default: str | None
) -> None:
    """Make ``table["workdir"]`` absolute (relative to ``path``'s directory) and check it."""
    value = table.get("workdir", default)
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise PlugError(f"{label}: {where}.workdir must be a non-empty string")
    workdir = (path.parent / value).resolve()
    if not workdir.is_dir():
        raise PlugError(f"{label}: {where}.workdir {workdir} is not a directory")
    table["workdir"] = str(workdir)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base`` key by key (a baseline over its file's gateway)."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _component(data: dict[str, Any], name: str, label: str, replaced: Collection[str]) -> Component:
    section = data.get(name)
    if not isinstance(section, dict):
        raise PlugError(f"{label}: missing table [{name}]")
    where = f"[{name}]"
    _reject_unknown(section, COMPONENT_KEYS, label, where)
    for key in _REQUIRED_COMPONENT_KEYS:
        if key not in section:
            why = f" (it replaces the whole [{name}] of the file it extends)"
            raise PlugError(
                f"{label}: {where} is missing required key {key!r}"
                + (why if name in replaced else "")
            )

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

    metrics = section.get("metrics")
    if metrics is not None and not (
        isinstance(metrics, str) and metrics.startswith(("http://", "https://"))
    ):
        raise PlugError(f"{label}: {where}.metrics must be an http:// URL string")

    fixed = _fixed(section, label, where)
    component = Component(
        name=name,
        fixed=fixed,
        upstream_http_version=http_version,
        command=tuple(command),
        ready=ready,
        workdir=Path(section["workdir"]),
        env=dict(env),
        setup=tuple(tuple(c) for c in setup),
        create_user=tuple(create_user) if create_user else None,
        metrics=metrics,
    )
    _check_placeholders(component, label)
    return component


def _fixed(section: dict[str, Any], label: str, where: str) -> dict[str, str]:
    """The ``fixed`` table: knob name -> the value the component always has."""
    table = section.get("fixed", {})
    if not isinstance(table, dict):
        raise PlugError(f"{label}: {where}.fixed must be a table of knob = value")
    for knob, value in table.items():
        if knob not in KNOBS:
            hint = difflib.get_close_matches(knob, KNOBS, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise PlugError(f"{label}: {where}.fixed.{knob} is not a knob{extra}")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise PlugError(f"{label}: {where}.fixed.{knob} must be a string or a number")
    return {knob: str(value) for knob, value in table.items()}


def _check_placeholders(component: Component, label: str) -> None:
    """Fail early, with the key's name, on a placeholder the harness does not know."""
    where = f"[{component.name}]"
    for key, text in component.templates():
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
    if clash := sorted(component.placeholders & component.fixed.keys()):
        raise PlugError(f"{label}: {where}.fixed.{clash[0]}: the component uses {{{clash[0]}}} too")


def _reject_unknown(
    table: dict[str, Any], allowed: Collection[str], label: str, where: str
) -> None:
    for key in table:
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            if not where and key in _MOVED:
                extra = f" ({_MOVED[key]})"
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
