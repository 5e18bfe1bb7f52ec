"""Knobs: the settings a test may need to turn, and what an implementation offers of each.

A component *honours* a knob when its plug file uses the knob's placeholder
(``{pool_timeout}``, see ``Component.placeholders``); it has a *fixed* value when
its ``fixed`` table says so (``fixed = { max_keepalive = "100" }``). A test that
needs a knob at a value the implementation cannot take is reported "not
configurable: <knob>" (never a behaviour failure, never a silent pass), and the
run's report counts its requirement as unproven.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .plug import Component

#: The service's knobs and the values the suites use unless a test asks for others.
SERVICE_KNOBS: dict[str, str] = {
    "previous_secret": "",
    "debug": "0",
    "llm_model": "fake-model",
    "llm_timeout": "3",  # short timeouts keep the fault tests fast
    "auth_mode": "secret",
}
#: The gateway's knobs and their default values in the suites.
GATEWAY_KNOBS: dict[str, str] = {
    "cors_origins": "http://localhost:3000",
    "connect_timeout": "2",
    "read_timeout": "3",
    "pool_timeout": "2",
    "max_connections": "20",
    "max_keepalive": "10",
    "auth_mode": "secret",
    # Far above what any suite does per user in a run: tests of LIMIT-3/LIMIT-4
    # start a gateway of their own with tight values.
    "max_streams_per_user": "1000",
    "chat_rate": "100000/m",
    "quiz_rate": "100000/m",
    "trusted_proxies": "",
    "legacy_views": "0",  # optional routes; GW-LEGACY-1's tests turn them on
    "drain_timeout": "5",  # after SIGTERM (OPS-DRAIN-2); the drain tests use their own
    "log_format": "text",  # OPS-LOG-1's tests turn JSON on
}
#: Every knob name, for checking a plug file's ``fixed`` table.
KNOBS = frozenset(SERVICE_KNOBS) | frozenset(GATEWAY_KNOBS)
#: The prefix of the skip reason the contract report shows as "not configurable".
NOT_CONFIGURABLE = "not configurable: "


def effective(component: Component, knob: str, wanted: str) -> str | None:
    """The value ``knob`` has when a test asks for ``wanted``; None if nobody can tell."""
    if knob in component.placeholders:
        return wanted
    return component.fixed.get(knob)


def effective_knobs(component: Component, wanted: Mapping[str, str]) -> dict[str, str]:
    """The knobs of ``wanted`` whose value in the running component is known, with it."""
    found = {knob: effective(component, knob, value) for knob, value in wanted.items()}
    return {knob: value for knob, value in found.items() if value is not None}


def require(component: Component, wanted: Mapping[str, str], adapt: Collection[str] = ()) -> None:
    """Stop the test as "not configurable" unless ``component`` can run with ``wanted``.

    A fixed value equal to the wanted one is fine (``"1"`` equals ``"1.0"``), and so is
    any fixed value of a knob in ``adapt``: the test reads the value it got instead.
    """
    missing = [
        knob
        for knob, value in wanted.items()
        if not _same(have := effective(component, knob, value), value)
        and not (knob in adapt and have is not None)
    ]
    if missing:
        not_configurable(component, missing)


def not_configurable(component: Component, knobs: Iterable[str]) -> None:
    """Stop the current test as ``not configurable: <knob>[, <knob>...][ (fixed: ...)]``."""
    names = sorted(knobs)
    fixed = ", ".join(f"{k}={component.fixed[k]}" for k in names if k in component.fixed)
    detail = f" (fixed: {fixed})" if fixed else ""
    pytest.skip(f"{NOT_CONFIGURABLE}{', '.join(names)}{detail}")


def _same(have: str | None, wanted: str) -> bool:
    if have is None:
        return False
    if have == wanted:
        return True
    try:
        return float(have) == float(wanted)
    except ValueError:
        return False
