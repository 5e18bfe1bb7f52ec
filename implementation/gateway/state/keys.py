"""Every Redis key the gateway writes, named in one place under GATEWAY_REDIS_PREFIX."""

from __future__ import annotations

import hashlib


class Keys:
    """Key names under ``prefix`` (one deployment, or one test run, per prefix)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def rate(self, bucket: str, user_id: object, period: int) -> str:
        """The stem of a user's fixed-window counters; the window index is appended in Redis."""
        return f"{self.prefix}rate:{bucket}:{user_id}:{period}"

    def streams(self, user_id: object) -> str:
        """A sorted set of the user's stream leases: member = lease id, score = expiry."""
        return f"{self.prefix}streams:{user_id}"

    def revoked(self, session_key: str) -> str:
        """Marks a session that ended; hashed so a key listing shows no live session key."""
        digest = hashlib.sha256(session_key.encode()).hexdigest()[:32]
        return f"{self.prefix}revoked:{digest}"
