"""What the fake saw: every non-control request, and how its response went."""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Message, Scope, Send

BODY_LIMIT = 64 * 1024
MAX_RECORDS = 5_000


@dataclass
class RequestRecord:
    """One request; the response fields are updated live while it is answered."""

    id: int
    method: str
    path: str
    headers: list[list[str]]
    body: str
    body_size: int
    http_version: str
    client: str | None
    match: str | None = None
    status: int | None = None
    aborted: bool = False
    completed: bool = False
    bytes_sent: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "path": self.path,
            "headers": [list(pair) for pair in self.headers],
            "body": self.body,
            "body_size": self.body_size,
            "match": self.match,
            "http_version": self.http_version,
            "client": self.client,
            "status": self.status,
            "aborted": self.aborted,
            "completed": self.completed,
            "bytes_sent": self.bytes_sent,
        }

    def tracking(self, send: Send) -> Send:
        """Wrap ``send`` so the record follows the response as it goes out."""

        async def tracked_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                self.bytes_sent += len(message.get("body", b""))
                if not message.get("more_body", False):
                    self.completed = True

        return tracked_send


@dataclass
class Recorder:
    """Bounded log of requests, oldest first."""

    limit: int = MAX_RECORDS
    _records: collections.deque[RequestRecord] = field(init=False)
    _ids: itertools.count[int] = field(init=False)

    def __post_init__(self) -> None:
        self._records = collections.deque(maxlen=self.limit)
        self._ids = itertools.count(1)

    def start(self, scope: Scope, body: bytes, body_size: int) -> RequestRecord:
        client = scope.get("client")
        record = RequestRecord(
            id=next(self._ids),
            method=scope["method"],
            path=scope["path"],
            headers=[
                [name.decode("latin-1").lower(), value.decode("latin-1")]
                for name, value in scope["headers"]
            ],
            body=body[:BODY_LIMIT].decode("utf-8", errors="replace"),
            body_size=body_size,
            http_version=scope.get("http_version", "1.1"),
            client=f"{client[0]}:{client[1]}" if client else None,
        )
        self._records.append(record)
        return record

    def to_json(self, match: str | None = None) -> list[dict[str, Any]]:
        """Records, optionally those of a token (applied, or seen in the body)."""
        return [
            r.to_json()
            for r in self._records
            if match is None or r.match == match or match in r.body
        ]

    def clear(self) -> None:
        self._records.clear()
