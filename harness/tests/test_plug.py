"""The plug file parser: a good file loads; every mistake is one precise line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import plug as plug_module
from harness.plug import PlugError, load_plug, render
from harness.system import REPO

VARIANTS = sorted((REPO / "implementation" / "broken").glob("*.toml"))

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


def write(tmp_path: Path, text: str, name: str = "impl.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_reference_plug_file_loads() -> None:
    plug = load_plug(REPO / "implementation" / "implementation.toml")
    assert plug.service.ready == "/health"
    assert plug.gateway.create_user is not None


@pytest.mark.parametrize("path", VARIANTS, ids=[path.stem for path in VARIANTS])
def test_every_broken_variant_loads_and_declares_what_it_breaks(path: Path) -> None:
    plug = load_plug(path)
    assert plug.breaks
    assert plug.suites
    assert plug.gateway.workdir == plug.service.workdir == REPO / "implementation"


def test_a_good_plug_file_loads(tmp_path: Path) -> None:
    plug = load_plug(write(tmp_path, GOOD))
    assert plug.name == "x"
    assert plug.service.workdir == plug.gateway.workdir == tmp_path
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
        (lambda t: 'workdir = "."\n' + t, "unknown key workdir (set [service].workdir and"),
        (lambda t: t + 'workdir = "nowhere"\n', "[gateway].workdir"),
        (lambda t: t + "workdir = 3\n", "[gateway].workdir must be a non-empty string"),
        (lambda t: t.replace("[gateway]", "[gateway]\nworkdr = '.'"), "(did you mean 'workdir'?)"),
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


def test_a_component_runs_in_its_own_workdir(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    text = GOOD.replace('ready = "/health"', 'ready = "/health"\nworkdir = "svc"')
    plug = load_plug(write(tmp_path, text))
    assert plug.service.workdir == tmp_path / "svc"
    assert plug.gateway.workdir == tmp_path


def variant(tmp_path: Path, text: str) -> Path:
    """``text`` as variants/broken.toml over ../impl.toml (GOOD, an env and a known failure)."""
    base = GOOD.replace('ready = "/api/health/"', 'ready = "/api/health/"\nenv = { A = "1" }')
    write(tmp_path, base + '[known_failures]\n"GW-PROXY-1" = "why"\n')
    return write(tmp_path, 'extends = "../impl.toml"\n' + text, "variants/broken.toml")


def test_a_variant_gets_exactly_the_tables_it_writes(tmp_path: Path) -> None:
    path = variant(
        tmp_path,
        'name = "broken"\nbreaks = ["GW-PROXY-3"]\n'
        '[gateway]\ncommand = ["{python}", "other.py", "{port}"]\nready = "/other/"\n',
    )
    plug = load_plug(path)
    assert plug.name == "broken"
    assert plug.breaks == ("GW-PROXY-3",)
    assert plug.gateway.command == ("{python}", "other.py", "{port}")
    assert plug.gateway.ready == "/other/"
    # Nothing of the base's [gateway] remains: no env, no setup, no create_user.
    assert dict(plug.gateway.env) == {}
    assert plug.gateway.setup == ()
    assert plug.gateway.create_user is None
    # What the variant does not write comes from the base unchanged.
    assert dict(plug.service.env) == {"SECRET": "{secret}"}
    assert dict(plug.known_failures) == {"GW-PROXY-1": "why"}


def test_a_variant_that_writes_one_env_variable_writes_the_whole_table(tmp_path: Path) -> None:
    path = variant(tmp_path, '[gateway.env]\nA = "2"\n')
    with pytest.raises(PlugError) as caught:
        load_plug(path)
    assert str(caught.value) == (
        "broken.toml: [gateway] is missing required key 'command' "
        "(it replaces the whole [gateway] of the file it extends)"
    )


def test_a_variant_table_runs_where_its_own_file_is(tmp_path: Path) -> None:
    path = variant(tmp_path, '[gateway]\ncommand = ["gw"]\nready = "/"\n')
    plug = load_plug(path)
    assert plug.gateway.workdir == tmp_path / "variants"
    assert plug.service.workdir == tmp_path  # the base's table, relative to the base
    path = variant(tmp_path, '[gateway]\ncommand = ["gw"]\nready = "/"\nworkdir = ".."\n')
    assert load_plug(path).gateway.workdir == tmp_path


def test_an_unknown_key_in_a_variant_is_named(tmp_path: Path) -> None:
    path = variant(tmp_path, '[gateway]\ncomand = ["gw"]\nready = "/"\n')
    with pytest.raises(PlugError, match=r"^broken.toml: unknown key \[gateway\].comand"):
        load_plug(path)
    path = variant(tmp_path, 'nmae = "x"\n')
    with pytest.raises(
        PlugError, match=r"^broken.toml: unknown key nmae \(did you mean 'name'\?\)"
    ):
        load_plug(path)


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
    assert baseline.component.workdir == tmp_path
    assert dict(baseline.component.env) == {"A": "{secret}", "EXTRA": "1"}


def test_a_baseline_with_an_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(PlugError, match=r"unknown key \[baselines.slow\].chat_pth"):
        load_plug(write(tmp_path, GOOD + '[baselines.slow]\nchat_pth = "/x/"\n'))


# -- harness/README.md documents every key and placeholder, and only those ------------------------
README = Path(plug_module.__file__).with_name("README.md")


def _tables(text: str) -> dict[str, list[list[str]]]:
    """The rows of the first table under each ``###`` heading, cells stripped."""
    found: dict[str, list[list[str]]] = {}
    for section in re.split(r"^### ", text, flags=re.MULTILINE)[1:]:
        heading, _, body = section.partition("\n")
        rows = [line.strip().strip("|").split(" | ") for line in body.splitlines()]
        found[heading] = [
            [cell.strip() for cell in row] for row in rows if len(row) > 1 and row[0]
        ][1:]  # past the head (the |---| line has one cell)
    return found


def test_the_readme_documents_every_plug_key() -> None:
    tables = _tables(README.read_text(encoding="utf-8"))
    documented = {
        heading: {row[0].strip("`") for row in rows} for heading, rows in tables.items() if rows
    }
    assert documented["Top level"] == plug_module.TOP_KEYS
    assert documented["`[service]` and `[gateway]`"] == plug_module.COMPONENT_KEYS
    assert documented["`[baselines.NAME]`"] == plug_module.BASELINE_KEYS


def test_the_readme_documents_every_placeholder_as_plug_py_does() -> None:
    rows = _tables(README.read_text(encoding="utf-8"))["Placeholders"]
    expected = [[f"`{{{name}}}`", text] for name, text in plug_module.PLACEHOLDERS.items()]
    table = "\n".join(f"| {name} | {text} |" for name, text in expected)
    assert rows == expected, f"harness/README.md, Placeholders, must read:\n{table}"
