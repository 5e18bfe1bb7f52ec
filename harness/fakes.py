"""Drive the fakes through their control API (see fakes/README.md)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

Record = dict[str, Any]


def new_token() -> str:
    """A fresh token a test puts in a request body to select a fake's behaviour."""
    return f"tok-{secrets.token_hex(6)}"


class FakeControl:
    """A fake server (LLM or service) and the handle to program and inspect it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=10.0, trust_env=False)

    def behave(self, match: str | None = None, **fields: Any) -> str:
        """Register a behaviour for requests whose body contains the returned token."""
        token = match or new_token()
        response = self._http.post("/_control/behaviours", json={"match": token, **fields})
        response.raise_for_status()
        return token

    def release(self, match: str, *, count: int = 0, timeout: float = 5.0) -> int:
        """Let requests held at ``hold_after`` go on; return how many were released.

        With ``count``, keep releasing until that many were: a release wakes only the
        requests parked at that moment, so one sent just before the fake parks a
        request would be lost.
        """
        deadline = time.monotonic() + timeout
        released = 0
        while True:
            response = self._http.post(f"/_control/release/{match}")
            response.raise_for_status()
            released += int(response.json().get("released", 0))
            if released >= count:
                return released
            assert time.monotonic() < deadline, f"only {released}/{count} held requests released"
            time.sleep(0.02)  # poll interval, not synchronisation

    def requests(self, match: str | None = None) -> list[Record]:
        """What the fake received, oldest first (optionally only for one token)."""
        params = {"match": match} if match else None
        response = self._http.get("/_control/requests", params=params)
        response.raise_for_status()
        records: list[Record] = response.json()
        return records

    def connections(self) -> dict[str, int]:
        """TCP connections accepted (and open, where the fake can tell)."""
        response = self._http.get("/_control/connections")
        response.raise_for_status()
        counts: dict[str, int] = response.json()
        return counts

    def reset(self) -> None:
        self._http.post("/_control/reset").raise_for_status()

    def wait_for(
        self,
        predicate: Callable[[list[Record]], bool],
        *,
        match: str | None = None,
        timeout: float = 5.0,
    ) -> list[Record]:
        """Poll the records until ``predicate`` holds; fail with what was seen at the deadline."""
        deadline = time.monotonic() + timeout
        records = self.requests(match)
        while not predicate(records):
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"fake at {self.url}: condition not met within {timeout}s; records: "
                    f"{[_summary(r) for r in records]}"
                )
            time.sleep(0.02)  # poll interval, not synchronisation
            records = self.requests(match)
        return records

    def close(self) -> None:
        self._http.close()


def header_values(record: Record, name: str) -> list[str]:
    """All values of header ``name`` in a recorded request (names are lower-case)."""
    name = name.lower()
    return [value for key, value in record["headers"] if key == name]


def _summary(record: Record) -> dict[str, Any]:
    keys = ("method", "path", "match", "aborted", "completed", "bytes_sent")
    return {k: record.get(k) for k in keys}
