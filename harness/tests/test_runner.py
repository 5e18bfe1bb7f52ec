"""harness/runner.py and harness/cli.py: the suites run the same from a checkout or a wheel."""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

import pytest

from harness import cli
from harness.runner import SETTINGS, SUITES, SUITES_ROOT, pytest_command


def test_the_kit_settings_match_the_checkout_settings() -> None:
    """harness/pytest.ini (used when installed) says what pyproject.toml says."""
    ini = configparser.ConfigParser()
    ini.read(SETTINGS)
    kit = dict(ini["pytest"])
    pyproject = tomllib.loads((SUITES_ROOT / "pyproject.toml").read_text())
    checkout = pyproject["tool"]["pytest"]["ini_options"]
    for key, value in kit.items():
        if key == "addopts":
            assert set(value.split()) <= set(checkout["addopts"]), value
        else:
            assert str(checkout[key]).lower() == value.lower(), key


def test_every_named_suite_exists() -> None:
    for paths in SUITES.values():
        for path in paths:
            assert (SUITES_ROOT / path).exists(), path


def test_the_command_is_absolute_and_reads_only_the_kit_settings(tmp_path: Path) -> None:
    argv = pytest_command(
        SUITES["gateway"], impl=Path("yours.toml"), report_dir=Path("out"), extra=["-k", "x"]
    )
    assert argv[argv.index("-c") + 1] == str(SETTINGS)
    assert argv[argv.index("--impl") + 1] == str(Path("yours.toml").resolve())
    assert argv[argv.index("--report-dir") + 1] == str(Path("out").resolve())
    assert str(SUITES_ROOT / "contract_tests/gateway") in argv
    assert argv[-2:] == ["-k", "x"]


def test_requirements_are_listed_one_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["requirements", "--level", "SHOULD"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines
    assert all(" (SHOULD): " in line for line in lines)


def test_a_missing_plug_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "no-such-plug.toml"]) == 2
    assert "no-such-plug.toml: no such plug file" in capsys.readouterr().err


def test_only_run_passes_arguments_on_to_pytest() -> None:
    with pytest.raises(SystemExit):
        cli.main(["requirements", "--", "-k", "x"])


def test_run_starts_the_named_suites_against_the_plug_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: dict[str, object] = {}

    def run_suites(suites: tuple[str, ...], **kwargs: object) -> object:
        started.update(suites=suites, **kwargs)
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(cli, "run_suites", run_suites)
    plug = SUITES_ROOT / "implementation" / "django_path.toml"
    assert cli.main(["run", str(plug), "--suite", "gateway", "--", "-k", "gw_proxy_3"]) == 0
    assert started["suites"] == SUITES["gateway"]
    assert started["impl"] == plug
    assert started["extra"] == ["-k", "gw_proxy_3"]
    assert "contract_tests/gateway" in capsys.readouterr().out
