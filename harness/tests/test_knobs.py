"""Knobs: a test gets the value it asks for, the fixed one, or "not configurable"."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.knobs import (
    GATEWAY_KNOBS,
    NOT_CONFIGURABLE,
    SERVICE_KNOBS,
    effective,
    require,
)
from harness.plug import Component, PlugError, load_plug
from harness.system import REPO

GATEWAY = Component(
    name="gateway",
    command=("gw", "--port", "{port}", "--pool-timeout={pool_timeout}"),
    ready="/",
    workdir=Path("."),
    env={"SERVICE": "{service_url}", "RATE": "{chat_rate}"},
    fixed={"max_keepalive": "100", "connect_timeout": "1"},
)


def not_configurable(call: object) -> str:
    with pytest.raises(pytest.skip.Exception) as skipped:
        call()  # type: ignore[operator]
    message = str(skipped.value)
    assert message.startswith(NOT_CONFIGURABLE), message
    return message


def test_a_knob_is_honoured_when_its_placeholder_is_used() -> None:
    assert {"pool_timeout", "chat_rate", "port", "service_url"} <= GATEWAY.placeholders
    assert effective(GATEWAY, "pool_timeout", "1") == "1"


def test_a_fixed_knob_has_its_fixed_value_and_an_unknown_one_none() -> None:
    assert effective(GATEWAY, "max_keepalive", "10") == "100"
    assert effective(GATEWAY, "max_connections", "2") is None


def test_asking_for_an_honoured_knob_or_the_fixed_value_is_fine() -> None:
    require(GATEWAY, {"pool_timeout": "1", "chat_rate": "2/m", "connect_timeout": "1.0"})


def test_asking_for_another_value_of_a_fixed_knob_is_not_configurable() -> None:
    message = not_configurable(lambda: require(GATEWAY, {"max_keepalive": "10"}))
    assert message == "not configurable: max_keepalive (fixed: max_keepalive=100)"


def test_a_test_that_adapts_takes_the_fixed_value() -> None:
    require(GATEWAY, {"max_keepalive": "10"}, adapt=("max_keepalive",))


def test_a_knob_neither_honoured_nor_fixed_is_not_configurable_even_when_adapting() -> None:
    message = not_configurable(
        lambda: require(
            GATEWAY, {"max_connections": "2", "quiz_rate": "1/m"}, adapt=("max_connections",)
        )
    )
    assert message == "not configurable: max_connections, quiz_rate"


def test_the_reference_honours_every_knob() -> None:
    plug = load_plug(REPO / "implementation" / "implementation.toml")
    assert set(SERVICE_KNOBS) <= plug.service.placeholders
    assert set(GATEWAY_KNOBS) <= plug.gateway.placeholders


BASE = """
name = "x"
[service]
command = ["svc", "{port}"]
ready = "/health"
[gateway]
command = ["gw", "{port}", "{pool_timeout}"]
ready = "/"
"""


@pytest.mark.parametrize(
    ("fixed", "message"),
    [
        (
            "fixed = { keepalive = 1 }",
            "[gateway].fixed.keepalive is not a knob (did you mean 'max_keepalive'?)",
        ),
        (
            "fixed = { pool_timeout = 1 }",
            "[gateway].fixed.pool_timeout: the component uses {pool_timeout} too",
        ),
        (
            "fixed = { max_keepalive = true }",
            "[gateway].fixed.max_keepalive must be a string or a number",
        ),
        ('fixed = "100"', "[gateway].fixed must be a table of knob = value"),
    ],
)
def test_a_wrong_fixed_table_is_one_line(tmp_path: Path, fixed: str, message: str) -> None:
    path = tmp_path / "impl.toml"
    path.write_text(BASE + fixed + "\n")
    with pytest.raises(PlugError) as error:
        load_plug(path)
    assert str(error.value) == f"impl.toml: {message}"


def test_fixed_values_are_read_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "impl.toml"
    path.write_text(BASE + 'fixed = { max_keepalive = 100, chat_rate = "60/m" }\n')
    assert load_plug(path).gateway.fixed == {"max_keepalive": "100", "chat_rate": "60/m"}


def test_a_plug_can_run_the_suites_against_one_of_its_baselines() -> None:
    plug = load_plug(REPO / "implementation" / "django_path.toml")
    assert plug.gateway.name == "gateway"
    assert plug.gateway.env["GATEWAY_FAST_PATH"] == "0"
