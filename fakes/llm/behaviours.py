"""Programmable behaviours: what the fake does to a request whose body contains a token.

Tests register a behaviour under a `match` token and put that token in the prompt, so
each test steers only its own requests even when many run against one fake.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Behaviour(BaseModel):
    """How to answer one request; a default instance means the normal deterministic reply."""

    model_config = ConfigDict(extra="forbid")

    reply: str | None = None
    content: str | None = None
    tokens: int | None = Field(default=None, ge=0, le=100_000)
    first_token_delay: float = Field(default=0.0, ge=0, le=300)
    token_delay: float = Field(default=0.0, ge=0, le=60)
    hold_after: int | None = Field(default=None, ge=0)
    fail_after: int | None = Field(default=None, ge=0)
    fail_mode: Literal["drop", "error_event"] = "drop"
    status: int | None = Field(default=None, ge=400, le=599)
    retry_after: str | int | None = None
    malformed: bool = False
    hang: bool = False
    # Sent instead of the answer's own content type (the body is unchanged), e.g.
    # "text/html" on a JSON answer or "application/json" on a stream.
    content_type: str | None = Field(default=None, pattern=r"^[\x20-\x7e]{1,200}$")


class BehaviourSpec(Behaviour):
    """The body of `POST /_control/behaviours`: a behaviour plus where and how often it applies."""

    match: str = Field(min_length=1, max_length=1000)
    times: int | None = Field(default=None, ge=1)


DEFAULT = Behaviour()


class Gate:
    """Holds requests at `hold_after` until the test releases their behaviour.

    A request takes its ticket (the current event) when it is matched, so a release
    sent any time after the request arrived frees it, even before it reaches the hold
    point; requests that arrive after a release wait for the next one.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.waiting = 0

    def ticket(self) -> asyncio.Event:
        return self._event

    def open(self) -> int:
        """Release every request holding a current ticket; return how many were waiting."""
        waiting = self.waiting
        self._event.set()
        self._event = asyncio.Event()
        return waiting


@dataclass
class Claim:
    """The behaviour one request uses, with its release ticket."""

    match: str
    behaviour: Behaviour
    gate: Gate
    ticket: asyncio.Event


@dataclass
class _Entry:
    spec: BehaviourSpec
    remaining: int | None


class Registry:
    """Registered behaviours, most recent last, and one release gate per token."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._gates: dict[str, Gate] = {}

    def register(self, spec: BehaviourSpec) -> None:
        """Add or replace the behaviour of `spec.match`; it becomes the most recent."""
        self._entries.pop(spec.match, None)
        self._entries[spec.match] = _Entry(spec=spec, remaining=spec.times)
        self._gates.setdefault(spec.match, Gate())

    def claim(self, body: bytes) -> Claim | None:
        """Pick the most recent live behaviour whose token is in `body`, and spend one use."""
        for match, entry in reversed(self._entries.items()):
            if entry.remaining == 0 or match.encode() not in body:
                continue
            if entry.remaining is not None:
                entry.remaining -= 1
            gate = self._gates[match]
            return Claim(match=match, behaviour=entry.spec, gate=gate, ticket=gate.ticket())
        return None

    def known(self, match: str) -> bool:
        return match in self._gates

    def release(self, match: str) -> int:
        return self._gates[match].open()

    def describe(self) -> list[dict[str, object]]:
        return [
            {**entry.spec.model_dump(exclude_defaults=True), "remaining": entry.remaining}
            | {"match": match}
            for match, entry in self._entries.items()
        ]

    def clear(self) -> None:
        """Forget everything, releasing whatever is held first."""
        for gate in self._gates.values():
            gate.open()
        self._entries.clear()
        self._gates.clear()
