"""The pieces every suite's conftest shares (harness/suite.py)."""

from __future__ import annotations

import argparse
import resource
import signal

import pytest

from harness.suite import add_option, new_secret, raise_nofile_limit, stop_cleanly_on_sigterm


class _Group:
    """The part of pytest's OptionGroup add_option uses: refuses a second registration."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser()

    def addoption(self, *args: str, **kwargs: object) -> None:
        try:
            self.parser.add_argument(*args, **kwargs)  # type: ignore[arg-type]
        except argparse.ArgumentError as exc:
            raise ValueError(str(exc)) from exc


def test_an_option_another_suite_added_already_is_kept_once() -> None:
    group = _Group()
    add_option(group, "--impl", default="first.toml")
    add_option(group, "--impl", default="second.toml")
    assert group.parser.parse_args([]).impl == "first.toml"


def test_other_errors_of_addoption_are_not_swallowed() -> None:
    class Broken:
        def addoption(self, *args: str, **kwargs: object) -> None:
            raise TypeError("bad option")

    with pytest.raises(TypeError):
        add_option(Broken(), "--x")


def test_the_nofile_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = raise_nofile_limit()
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY


def test_a_secret_never_reads_as_a_command_line_option() -> None:
    secrets = {new_secret() for _ in range(200)}
    assert len(secrets) == 200
    assert not any(secret.startswith("-") for secret in secrets)
    assert all(len(secret) > 40 for secret in secrets)


def test_sigterm_unwinds_like_ctrl_c_so_fixtures_stop_the_servers() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        stop_cleanly_on_sigterm()
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGTERM, previous)
