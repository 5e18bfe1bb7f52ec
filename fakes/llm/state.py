"""Everything one fake remembers, in one object kept on `app.state.fake`.

Two apps in one process (two fakes in one test run) never share anything.
"""

from __future__ import annotations

from collections import deque

from starlette.types import Scope

from fakes.llm.behaviours import DEFAULT, Behaviour, Claim, Registry
from fakes.llm.recorder import Record, build_record

MAX_RECORDS = 10_000


class FakeLLMState:
    """Behaviours, recorded requests and the TCP connection count of one fake."""

    def __init__(self, max_records: int = MAX_RECORDS, default: Behaviour = DEFAULT) -> None:
        #: What requests that match no registered token get (the deterministic reply).
        self.default = default
        self.behaviours = Registry()
        self.records: deque[Record] = deque(maxlen=max_records)
        self.accepted = 0
        self._next_id = 1

    def connection_accepted(self) -> None:
        """Called by the server's protocol for every TCP connection it accepts."""
        self.accepted += 1

    def add_record(self, scope: Scope, body: bytes, claim: Claim | None) -> Record:
        record = build_record(self._next_id, scope, body, claim)
        self._next_id += 1
        self.records.append(record)
        return record

    def reset(self) -> None:
        """Forget behaviours, requests and connections; release every held request."""
        self.behaviours.clear()
        self.records.clear()
        self.accepted = 0
