"""Settings of the internal service, read once from the environment.

The service refuses to start on a configuration that would make it insecure or useless,
and the error names the variable to change, because the operator reading a crash-looping
container log needs exactly that line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from deploy.metrics import Listener

PLACEHOLDER_SECRET = "change-me-in-production-secret-key"  # noqa: S105 - the value we refuse
DEFAULT_LLM_BASE_URL = "http://127.0.0.1:8100/v1"
DEFAULT_LLM_MODEL = "fake-model"
DEFAULT_LLM_TIMEOUT = 60.0
DEFAULT_PING_INTERVAL = 15.0
#: How the gateway proves itself: the secret itself, or a signature made with it (SEC-8).
AUTH_MODES = ("secret", "hmac")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable to set."""


@dataclass(frozen=True)
class Settings:
    """Everything the service needs; immutable so one app never sees another's config."""

    secret: str
    previous_secret: str | None = None
    debug: bool = False
    llm_base_url: str = DEFAULT_LLM_BASE_URL
    llm_api_key: str = ""
    llm_model: str = DEFAULT_LLM_MODEL
    llm_timeout: float = DEFAULT_LLM_TIMEOUT
    ping_interval: float = DEFAULT_PING_INTERVAL
    auth_mode: str = "secret"

    def __post_init__(self) -> None:
        if self.auth_mode not in AUTH_MODES:
            raise ConfigError(
                f"FASTAPI_AUTH_MODE must be 'secret' or 'hmac', not {self.auth_mode!r}: "
                "set FASTAPI_AUTH_MODE to the mode the gateway uses"
            )
        _check_secret("FASTAPI_SECRET", self.secret, debug=self.debug)
        if self.previous_secret is not None:
            _check_secret("FASTAPI_SECRET_PREVIOUS", self.previous_secret, debug=self.debug)
        _check_base_url(self.llm_base_url)
        if self.llm_api_key and not (self.llm_api_key.isascii() and self.llm_api_key.isprintable()):
            raise ConfigError("LLM_API_KEY must be printable ASCII: set LLM_API_KEY again")
        if not self.llm_model:
            raise ConfigError("LLM_MODEL is empty: set LLM_MODEL to the model name to request")
        if not (math.isfinite(self.llm_timeout) and self.llm_timeout > 0):
            raise ConfigError("LLM_TIMEOUT must be a positive number of seconds")
        if not (math.isfinite(self.ping_interval) and self.ping_interval > 0):
            raise ConfigError("the SSE ping interval must be a positive number of seconds")

    def __repr__(self) -> str:
        # Secrets must never reach a log line through a repr.
        return (
            f"Settings(debug={self.debug!r}, llm_base_url={self.llm_base_url!r}, "
            f"llm_model={self.llm_model!r}, llm_timeout={self.llm_timeout!r}, "
            f"auth_mode={self.auth_mode!r})"
        )

    @property
    def accepted_secrets(self) -> tuple[bytes, ...]:
        """The secrets the middleware accepts, current first, as header bytes."""
        secrets = [self.secret]
        if self.previous_secret is not None:
            secrets.append(self.previous_secret)
        return tuple(s.encode("ascii") for s in secrets)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; an empty variable counts as unset."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "")
            return value if value != "" else None

        secret = get("FASTAPI_SECRET")
        if secret is None:
            raise ConfigError(
                "FASTAPI_SECRET is empty: set FASTAPI_SECRET to the secret shared with the gateway"
            )
        return cls(
            secret=secret,
            previous_secret=get("FASTAPI_SECRET_PREVIOUS"),
            debug=_parse_bool("FASTAPI_DEBUG", get("FASTAPI_DEBUG")),
            llm_base_url=(get("LLM_BASE_URL") or DEFAULT_LLM_BASE_URL).rstrip("/"),
            llm_api_key=get("LLM_API_KEY") or "",
            llm_model=get("LLM_MODEL") or DEFAULT_LLM_MODEL,
            llm_timeout=_parse_seconds("LLM_TIMEOUT", get("LLM_TIMEOUT"), DEFAULT_LLM_TIMEOUT),
            auth_mode=(get("FASTAPI_AUTH_MODE") or "secret").strip().lower(),
        )


def metrics_listener() -> Listener | None:
    """Where to serve the metrics (deploy/metrics.py reads METRICS_PORT and METRICS_HOST).

    None when METRICS_PORT is unset: no listener, and the metrics cost only their counting.
    """
    try:
        return Listener.from_environ()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_secret(name: str, value: str, *, debug: bool) -> None:
    if value == "":
        raise ConfigError(f"{name} is empty: set {name} to the secret shared with the gateway")
    if value == PLACEHOLDER_SECRET and not debug:
        raise ConfigError(
            f"{name} is the placeholder {PLACEHOLDER_SECRET!r}: set {name} to a real secret "
            "(the placeholder is only allowed with FASTAPI_DEBUG=1)"
        )
    # A value that cannot travel in an HTTP header could never match: fail now, not per request.
    if not value.isascii() or not value.isprintable() or value != value.strip():
        raise ConfigError(
            f"{name} must be printable ASCII without surrounding whitespace: set {name} again"
        )


def _check_base_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"LLM_BASE_URL {url!r} is not an http(s) URL: set LLM_BASE_URL "
            "to the OpenAI-compatible API root, e.g. http://127.0.0.1:8100/v1"
        )


def _parse_bool(name: str, value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be 1/0/true/false, not {value!r}: set {name} again")


def _parse_seconds(name: str, value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {value!r}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
    return seconds
