"""gateway/auth/session_users.py: the fast path's cache of verified sessions."""

from __future__ import annotations

import asyncio
import threading
from importlib import import_module

import pytest
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.test import Client

from gateway.auth import session_users as module
from gateway.auth.session_users import SessionUsers, verified_session

pytestmark = pytest.mark.asyncio


def _session_of(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def session_of(user) -> str:
    """A logged-in session key (the ORM is sync-only: run it in a thread)."""
    return await asyncio.to_thread(_session_of, user)


async def verified(key: str) -> tuple[object, float] | None:
    return await asyncio.to_thread(verified_session, key)


@pytest.fixture
def carol(database):
    user, _ = get_user_model().objects.get_or_create(username="carol")
    user.set_password("carol-password-1")
    user.is_active = True
    user.save()
    return user


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(module, "time", clock)
    return clock


async def test_a_miss_looks_up_once_and_a_hit_does_not(alice) -> None:
    key = await session_of(alice)
    cache = SessionUsers(ttl=5.0, max_size=10)
    assert await cache.user_id(key) == alice.pk
    assert await cache.user_id(key) == alice.pk
    assert cache.lookups == 1


async def test_concurrent_misses_share_one_lookup(alice) -> None:
    key = await session_of(alice)
    cache = SessionUsers(ttl=5.0, max_size=10)
    ids = await asyncio.gather(*(cache.user_id(key) for _ in range(20)))
    assert ids == [alice.pk] * 20
    assert cache.lookups == 1


async def test_an_entry_expires_after_the_ttl(alice, clock: Clock) -> None:
    key = await session_of(alice)
    cache = SessionUsers(ttl=5.0, max_size=10)
    assert await cache.user_id(key) == alice.pk
    clock.now += 4.9
    assert await cache.user_id(key) == alice.pk
    assert cache.lookups == 1
    clock.now += 0.2
    assert await cache.user_id(key) == alice.pk
    assert cache.lookups == 2


async def test_the_least_recently_used_entry_goes_first(monkeypatch, alice) -> None:
    monkeypatch.setattr(module, "verified_session", lambda key: (key, 1e6))
    cache = SessionUsers(ttl=5.0, max_size=2)
    for key in ("key-a-123456", "key-b-123456"):
        await cache.user_id(key)
    await cache.user_id("key-a-123456")  # a is now the most recent
    await cache.user_id("key-c-123456")
    assert list(cache._entries) == ["key-a-123456", "key-c-123456"]


async def test_refused_sessions_are_not_cached(carol) -> None:
    cache = SessionUsers(ttl=5.0, max_size=10)
    assert await cache.user_id("no-such-session-key-123") is None
    assert await cache.user_id("no-such-session-key-123") is None
    assert cache.lookups == 2
    assert len(cache) == 0


async def test_an_inactive_user_is_refused(carol) -> None:
    key = await session_of(carol)
    assert await verified(key) is not None
    carol.is_active = False
    await carol.asave()
    assert await verified(key) is None


async def test_a_session_whose_hash_no_longer_matches_is_refused(carol) -> None:
    key = await session_of(carol)
    store = import_module(settings.SESSION_ENGINE).SessionStore(key)
    await store.aset(HASH_SESSION_KEY, "0" * 64)  # e.g. the password changed since the login
    await store.asave()
    assert await verified(key) is None
    carol.set_password("another-password-2")
    await carol.asave()
    assert await verified(await session_of(carol)) is not None


async def test_a_session_without_a_user_is_refused() -> None:
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store["something"] = 1
    await store.asave()
    assert await verified(store.session_key) is None


async def test_an_error_in_the_session_check_is_raised_not_taken_for_anonymous(
    monkeypatch, alice
) -> None:
    """The fast path counts and logs what it did not expect; None would hide it."""
    key = await session_of(alice)

    class Broken(RuntimeError):
        pass

    def broken_backend(path: str):
        raise Broken("the auth backend failed")

    monkeypatch.setattr(module, "load_backend", broken_backend)
    with pytest.raises(Broken):
        await verified(key)
    cache = SessionUsers(ttl=5.0, max_size=10)
    with pytest.raises(Broken):
        await cache.user_id(key)
    assert len(cache) == 0


async def test_evict_forgets_a_key_and_a_lookup_in_flight_is_not_cached(monkeypatch) -> None:
    entered, go_on = threading.Event(), threading.Event()

    def slow(key: str) -> tuple[object, float]:
        entered.set()
        go_on.wait(5)
        return 7, 1e6

    monkeypatch.setattr(module, "verified_session", slow)
    cache = SessionUsers(ttl=5.0, max_size=10)
    pending = asyncio.ensure_future(cache.user_id("key-x-123456"))
    await asyncio.to_thread(entered.wait, 5)
    cache.evict("key-x-123456")  # a logout while the lookup runs
    go_on.set()
    assert await pending is None
    assert len(cache) == 0
    assert await cache.user_id("key-x-123456") == 7  # a later lookup is trusted again
    cache.evict("key-x-123456")
    assert len(cache) == 0


async def test_logout_and_session_deletion_evict_from_the_process_cache(alice) -> None:
    cache = module.session_users
    cache.clear()
    key = await session_of(alice)
    assert await cache.user_id(key) == alice.pk
    store = import_module(settings.SESSION_ENGINE).SessionStore(key)
    await store.adelete()  # flush(), cycle_key() and clearsessions delete the row
    assert key not in cache._entries

    client = Client()
    await asyncio.to_thread(client.force_login, alice)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert await cache.user_id(key) == alice.pk
    await asyncio.to_thread(client.logout)  # user_logged_out
    assert key not in cache._entries
