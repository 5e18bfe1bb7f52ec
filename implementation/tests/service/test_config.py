"""Settings from the environment and refusals to start (SVC-AUTH-5, SVC-LLM-5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastapi_service.core.config import PLACEHOLDER_SECRET, ConfigError, Settings
from fastapi_service.main import _app_from_env

IMPLEMENTATION = Path(__file__).resolve().parents[2]


def test_defaults_and_empty_values_mean_unset() -> None:
    settings = Settings.from_env(
        {
            "FASTAPI_SECRET": "s3cret",
            "FASTAPI_SECRET_PREVIOUS": "",
            "FASTAPI_DEBUG": "",
            "LLM_BASE_URL": "",
            "LLM_API_KEY": "",
            "LLM_MODEL": "",
            "LLM_TIMEOUT": "",
        }
    )
    assert settings.secret == "s3cret"
    assert settings.previous_secret is None
    assert settings.debug is False
    assert settings.llm_base_url == "http://127.0.0.1:8100/v1"
    assert settings.llm_model == "fake-model"
    assert settings.llm_timeout == 60.0
    assert settings.accepted_secrets == (b"s3cret",)
    assert settings.auth_mode == "secret"


def test_reads_every_variable() -> None:
    settings = Settings.from_env(
        {
            "FASTAPI_SECRET": "new",
            "FASTAPI_SECRET_PREVIOUS": "old",
            "FASTAPI_DEBUG": "true",
            "LLM_BASE_URL": "http://127.0.0.1:9999/v1/",
            "LLM_API_KEY": "sk-x",
            "LLM_MODEL": "m",
            "LLM_TIMEOUT": "2.5",
        }
    )
    assert settings.accepted_secrets == (b"new", b"old")
    assert settings.debug is True
    assert settings.llm_base_url == "http://127.0.0.1:9999/v1"
    assert (settings.llm_api_key, settings.llm_model, settings.llm_timeout) == ("sk-x", "m", 2.5)


@pytest.mark.parametrize("env", [{}, {"FASTAPI_SECRET": ""}])
def test_refuses_an_empty_secret(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="FASTAPI_SECRET is empty: set FASTAPI_SECRET"):
        Settings.from_env(env)


@pytest.mark.parametrize("debug", ["", "0", "false", "off"])
def test_refuses_the_placeholder_without_debug(debug: str) -> None:
    env = {"FASTAPI_SECRET": PLACEHOLDER_SECRET, "FASTAPI_DEBUG": debug}
    with pytest.raises(ConfigError, match="set FASTAPI_SECRET") as info:
        Settings.from_env(env)
    assert "FASTAPI_DEBUG" in str(info.value)


@pytest.mark.parametrize("debug", ["1", "true", "TRUE", "yes", "on"])
def test_allows_the_placeholder_in_debug(debug: str) -> None:
    settings = Settings.from_env({"FASTAPI_SECRET": PLACEHOLDER_SECRET, "FASTAPI_DEBUG": debug})
    assert settings.debug is True


def test_refuses_the_placeholder_as_previous_secret() -> None:
    env = {"FASTAPI_SECRET": "s", "FASTAPI_SECRET_PREVIOUS": PLACEHOLDER_SECRET}
    with pytest.raises(ConfigError, match="set FASTAPI_SECRET_PREVIOUS"):
        Settings.from_env(env)


@pytest.mark.parametrize("secret", ["sécret", "a b\n", " padded", "tab\there"])
def test_refuses_secrets_that_cannot_travel_in_a_header(secret: str) -> None:
    with pytest.raises(ConfigError, match="FASTAPI_SECRET must be printable ASCII"):
        Settings.from_env({"FASTAPI_SECRET": secret})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FASTAPI_DEBUG", "maybe"),
        ("LLM_TIMEOUT", "soon"),
        ("LLM_TIMEOUT", "0"),
        ("LLM_TIMEOUT", "-1"),
        ("LLM_TIMEOUT", "nan"),
        ("LLM_BASE_URL", "ftp://127.0.0.1/v1"),
        ("LLM_BASE_URL", "127.0.0.1:8100"),
        ("FASTAPI_AUTH_MODE", "hmac-sha1"),
        ("FASTAPI_AUTH_MODE", "none"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"FASTAPI_SECRET": "s", name: value})


@pytest.mark.parametrize(
    ("value", "mode"), [("secret", "secret"), ("hmac", "hmac"), (" HMAC ", "hmac")]
)
def test_reads_the_auth_mode(value: str, mode: str) -> None:
    settings = Settings.from_env({"FASTAPI_SECRET": "s", "FASTAPI_AUTH_MODE": value})
    assert settings.auth_mode == mode


def test_a_bad_auth_mode_names_the_setting_and_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        Settings(secret="s", auth_mode="signed")
    assert str(info.value).startswith("FASTAPI_AUTH_MODE must be 'secret' or 'hmac', not 'signed'")


def test_repr_hides_secrets() -> None:
    settings = Settings(secret="top-secret-1", previous_secret="top-secret-0", llm_api_key="sk-9")
    text = repr(settings)
    assert "top-secret" not in text
    assert "sk-9" not in text


def test_app_from_env_exits_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTAPI_SECRET", "")
    with pytest.raises(SystemExit) as info:
        _app_from_env()
    message = str(info.value.code)
    assert message.startswith("fastapi_service: FASTAPI_SECRET is empty")
    assert "\n" not in message


def test_uvicorn_refuses_to_start_without_a_secret() -> None:
    """The real command: non-zero exit, one line naming the variable, no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTAPI_", "LLM_"))}
    env["FASTAPI_SECRET"] = ""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "fastapi_service.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
        ],
        cwd=IMPLEMENTATION,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "set FASTAPI_SECRET" in result.stderr
    lines = [line for line in result.stderr.splitlines() if "FASTAPI_SECRET" in line]
    assert len(lines) == 1


def test_refuses_an_api_key_that_cannot_travel_in_a_header() -> None:
    with pytest.raises(ConfigError, match="LLM_API_KEY"):
        Settings.from_env({"FASTAPI_SECRET": "s", "LLM_API_KEY": "sk-\u00e9"})
