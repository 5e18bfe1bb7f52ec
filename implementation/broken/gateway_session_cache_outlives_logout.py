"""Broken on purpose: the session cache forgets nothing at logout or key rotation (GW-SESS-8)."""

from lamla.asgi import application  # first: it sets Django up, which session_users needs

from gateway.auth.session_users import SessionUsers  # isort: skip


def _keeps(self: SessionUsers, session_key: str | None) -> None:
    return None  # an ended session stays cached for GATEWAY_SESSION_CACHE_TTL


SessionUsers.evict = _keeps  # type: ignore[method-assign]
__all__ = ["application"]
