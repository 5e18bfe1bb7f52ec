"""The plug file parser: a good file loads; every mistake is one precise line."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract_tests.harness.plug import PlugError, load_plug, render
from contract_tests.harness.system import REPO

GOOD = """
name = "x"
[service]
command = ["{python}", "-m", "svc", "--port", "{port}"]
ready = "/health"
env = { SECRET = "{secret}" }
[gateway]
command = ["{python}", "gw.py", "{port}"]
ready = "/api/health/"
setup = [["{python}", "manage.py", "migrate"]]
create_user = ["{python}", "manage.py", "user", "{username}", "{password}"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "impl.toml"
    path.write_text(text)
    return path


def test_the_reference_plug_file_loads() -> None:
    plug = load_plug(REPO / "implementation" / "implementation.toml")
    assert plug.service.ready == "/health"
    assert plug.gateway.create_user is not None


def test_a_good_plug_file_loads(tmp_path: Path) -> None:
    plug = load_plug(write(tmp_path, GOOD))
    assert plug.name == "x"
    assert plug.workdir == tmp_path
    assert plug.gateway.setup == (("{python}", "manage.py", "migrate"),)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace('ready = "/health"\n', ""),
            "[service] is missing required key 'ready'",
        ),
        (
            lambda t: t.replace('command = ["{python}", "gw.py"', 'comand = ["{python}", "gw.py"'),
            "unknown key [gateway].comand (did you mean 'command'?)",
        ),
        (
            lambda t: t.replace("{secret}", "{secrt}"),
            "unknown placeholder {secrt} (did you mean {secret}?)",
        ),
        (lambda t: t.replace('"gw.py"', "3"), "[gateway].command must be a list of strings"),
        (lambda t: t.replace('"/api/health/"', '"api/health/"'), "[gateway].ready must be a path"),
        (lambda t: t.replace("[gateway]", "[gateways]"), "unknown key gateways"),
        (lambda t: t.replace('"--port", "{port}"', '"{username}"'), "{username} is only available"),
        (lambda t: t + "\n[[", "not valid TOML"),
    ],
)
def test_a_broken_plug_file_gives_one_precise_line(tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(PlugError) as caught:
        load_plug(write(tmp_path, edit(GOOD)))
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_a_missing_plug_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PlugError, match="no such plug file"):
        load_plug(tmp_path / "nope.toml")


def test_render_fills_placeholders_and_keeps_literal_braces() -> None:
    assert render("{port}-{{x}}", {"port": "1"}, where="w") == "1-{x}"
    with pytest.raises(PlugError, match=r"placeholder \{secret\} has no value"):
        render("{secret}", {}, where="w")


def test_a_variant_extends_its_base_and_keeps_its_workdir(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    variants = tmp_path / "variants"
    variants.mkdir()
    variant = variants / "broken.toml"
    variant.write_text(
        'extends = "../impl.toml"\nname = "broken"\nbreaks = ["GW-PROXY-3"]\n'
        '[gateway]\ncommand = ["{python}", "other.py", "{port}"]\n'
        '[service.env]\nEXTRA = "1"\n'
    )
    plug = load_plug(variant)
    assert plug.name == "broken"
    assert plug.breaks == ("GW-PROXY-3",)
    assert plug.workdir == tmp_path
    assert plug.gateway.command == ("{python}", "other.py", "{port}")
    assert plug.gateway.ready == "/api/health/"
    assert dict(plug.service.env) == {"SECRET": "{secret}", "EXTRA": "1"}


def test_a_baseline_overrides_the_gateway_and_merges_its_env(tmp_path: Path) -> None:
    text = GOOD + (
        '[baselines.slow]\ndescription = "the old way"\nchat_path = "/old/chat/"\n'
        'command = ["{python}", "old.py", "{port}"]\nenv = { EXTRA = "1" }\n'
    )
    text = text.replace(
        'ready = "/api/health/"', 'ready = "/api/health/"\nenv = { A = "{secret}" }'
    )
    (baseline,) = load_plug(write(tmp_path, text)).baselines
    assert baseline.name == "slow"
    assert baseline.description == "the old way"
    assert baseline.chat_path == "/old/chat/"
    assert baseline.stream_path == "/api/chat/stream/"
    assert baseline.component.command == ("{python}", "old.py", "{port}")
    assert baseline.component.ready == "/api/health/"
    assert dict(baseline.component.env) == {"A": "{secret}", "EXTRA": "1"}


def test_a_baseline_with_an_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(PlugError, match=r"unknown key \[baselines.slow\].chat_pth"):
        load_plug(write(tmp_path, GOOD + '[baselines.slow]\nchat_pth = "/x/"\n'))
