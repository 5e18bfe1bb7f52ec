"""Who a session cookie belongs to, for the ASGI fast path, without a thread per request.

A per-process TTL + LRU cache of session key -> user id, each miss checked by
one thread hop exactly as ``django.contrib.auth.get_user`` checks it (user,
backend, active, session auth hash). A refused session is not cached and goes
to Django; an error is raised, for the fast path to count, log and hand over.
A logout or session deletion in this process evicts at once (apps/core/apps.py);
with REDIS_URL it is also marked revoked for every other worker, which checks
the mark on each request (gateway/limits.py); without it, another worker
trusts its cached entry GATEWAY_SESSION_CACHE_TTL at most (README, "Performance").
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.db import close_old_connections
from django.utils.crypto import constant_time_compare

from gateway.state.shared import shared_state

__all__ = ["SessionUsers", "evict_deleted_session", "evict_logged_out", "session_users"]


@dataclass(frozen=True, slots=True)
class _Entry:
    user_id: Any
    expires: float  # time.monotonic()


class SessionUsers:
    """A TTL + LRU cache of verified session key -> user id, with single-flight misses."""

    def __init__(self, *, ttl: float, max_size: int) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Evictions come from signal receivers in other threads.
        self._lock = threading.Lock()
        self._pending: dict[str, asyncio.Future[_Entry | None]] = {}
        self._stale: set[str] = set()  # evicted while a lookup was in flight
        self.lookups = 0  # thread hops made (for tests and diagnostics)

    async def user_id(self, session_key: str) -> Any | None:
        """The verified user id of ``session_key``, or None (not logged in, or unsure)."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(session_key)
            if entry is not None:
                if entry.expires > now:
                    self._entries.move_to_end(session_key)
                    return entry.user_id
                del self._entries[session_key]
        pending = self._pending.get(session_key)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(session_key))
            self._pending[session_key] = pending
            pending.add_done_callback(lambda done: self._settle(session_key, done))
        # shield: one caller leaving (a client disconnect) must not cancel the
        # lookup the others wait for.
        entry = await asyncio.shield(pending)
        return None if entry is None else entry.user_id

    def _settle(self, session_key: str, done: asyncio.Future[_Entry | None]) -> None:
        self._pending.pop(session_key, None)
        if not done.cancelled():
            done.exception()  # retrieved: its waiters (if any are left) raise it

    async def _lookup(self, session_key: str) -> _Entry | None:
        self.lookups += 1
        try:
            found = await sync_to_async(verified_session, thread_sensitive=False)(session_key)
        finally:
            with self._lock:
                stale = session_key in self._stale  # evicted while we looked
                self._stale.discard(session_key)
        if found is None or stale:
            return None
        user_id, expiry_age = found
        entry = _Entry(user_id, time.monotonic() + min(self.ttl, expiry_age))
        if self.ttl > 0:
            with self._lock:
                self._entries[session_key] = entry
                self._entries.move_to_end(session_key)
                while len(self._entries) > self.max_size:
                    self._entries.popitem(last=False)
        return entry

    def evict(self, session_key: str | None) -> None:
        """Forget ``session_key`` now; a lookup in flight for it is not cached."""
        if not session_key:
            return
        with self._lock:
            self._entries.pop(session_key, None)
            if session_key in self._pending:
                self._stale.add(session_key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def verified_session(session_key: str) -> tuple[Any, float] | None:
    """(user id, seconds the session has left) when ``get_user`` would accept it, else None.

    Runs in a worker thread (it queries the database). Read-only: unlike
    ``get_user`` it never flushes or cycles a session; a session that would
    need that is left to Django.
    """
    try:
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        try:
            user_id = get_user_model()._meta.pk.to_python(store[SESSION_KEY])
            backend_path = store[BACKEND_SESSION_KEY]
        except KeyError:
            return None
        if backend_path not in settings.AUTHENTICATION_BACKENDS:
            return None
        user = load_backend(backend_path).get_user(user_id)  # None when inactive
        if user is None:
            return None
        if hasattr(user, "get_session_auth_hash"):
            session_hash = store.get(HASH_SESSION_KEY)
            if not session_hash or not constant_time_compare(
                session_hash, user.get_session_auth_hash()
            ):
                return None
        return user.pk, float(store.get_expiry_age())
    finally:
        # This thread is not a request's: nothing else closes its connection.
        close_old_connections()


session_users = SessionUsers(
    ttl=settings.GATEWAY_SESSION_CACHE_TTL, max_size=settings.GATEWAY_SESSION_CACHE_SIZE
)


def evict_logged_out(sender: object, request: Any = None, **kwargs: Any) -> None:
    """``user_logged_out`` receiver: the session ends now, in every worker."""
    session = getattr(request, "session", None)
    _ended(getattr(session, "session_key", None))


def evict_deleted_session(sender: object, instance: Any = None, **kwargs: Any) -> None:
    """``post_delete`` receiver of the db session model (flush, cycle_key, clearsessions)."""
    _ended(getattr(instance, "session_key", None))


def _ended(session_key: str | None) -> None:
    if not session_key:
        return
    session_users.evict(session_key)
    shared = shared_state()
    if shared is not None:
        shared.revoke(session_key)  # a thread: receivers of asend run sync ones in one
