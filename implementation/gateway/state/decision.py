"""What an admission decided: the verdict of the script, kept free of the Redis client.

gateway/limits.py reads it on every request; importing redis (half a second) waits
until a process is configured to use it (gateway/state/shared.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.state.admission import Lease


class Verdict(enum.IntEnum):
    """What the admission script said (its first return value)."""

    REVOKED = 0  # the session ended on some worker
    RATE = 1  # over the rate: the second value is Retry-After
    STREAMS = 2  # the user's stream slots are all taken
    ADMITTED = 3


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    retry_after: int = 0
    lease: Lease | None = None
