"""FAULT-5: clients that trickle their request at one byte per second hold nobody up.

50 connections send a request line and headers one byte per second and never finish
them; 50 more send complete headers with a ``Content-Length`` and then trickle the
body. Meanwhile a normal client's requests must be answered as usual, within 2 s, at
the gateway and at the service alike.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

import httpx
import pytest

from harness.client import Session
from harness.fakes import FakeControl
from harness.processes import LOOPBACK
from harness.spec import route
from harness.system import Running

SLOW_HEADERS = 50
SLOW_BODIES = 50
DECLARED_BODY = 100_000  # what the body tricklers promise and never deliver
ANSWERED_WITHIN = 2.0
CHECKS = 4  # normal requests per kind, spread over the trickling
TICK = 1.0  # one byte per connection per second
CHAT = route("chat")


class Trickler:
    """Sockets fed one byte each per tick by a background thread, until ``close()``.

    A connection the server closes (a timeout for slow clients is fine) just drops
    out; ``open_count()`` says how many are still being fed.
    """

    def __init__(self, port: int, heads: Sequence[bytes], bodies: Sequence[bytes]) -> None:
        self._sockets: list[tuple[socket.socket, bytes]] = []
        self._stop = threading.Event()
        self.ticks = 0
        self._lock = threading.Lock()
        try:
            for prefix, payload in [(b"", head) for head in heads] + [
                (head, b"x" * DECLARED_BODY) for head in bodies
            ]:
                sock = socket.create_connection((LOOPBACK, port), timeout=5.0)
                if prefix:
                    sock.sendall(prefix)  # complete headers at once, then the body trickles
                sock.setblocking(False)
                self._sockets.append((sock, payload))
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._run, name="trickler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        max_ticks = 120  # bounded: a test never trickles for more than two minutes
        for position in range(max_ticks):
            with self._lock:
                alive = []
                for sock, payload in self._sockets:
                    try:
                        sock.send(payload[position : position + 1])
                        alive.append((sock, payload))
                    except OSError:  # closed by the server, or the buffer is full
                        sock.close()
                self._sockets = alive
                self.ticks += 1
            # The trickle pace is the behaviour under test, not synchronisation.
            if self._stop.wait(TICK):
                return

    def open_count(self) -> int:
        with self._lock:
            return len(self._sockets)

    def wait_ticks(self, count: int) -> None:
        """Poll until the feeder has sent ``count`` rounds of bytes."""
        deadline = time.monotonic() + count * TICK + 5.0
        while self.ticks < count:
            assert time.monotonic() < deadline, f"only {self.ticks}/{count} trickle rounds"
            time.sleep(0.02)  # poll interval, not synchronisation

    def close(self) -> None:
        self._stop.set()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(5.0)
        with self._lock:
            for sock, _ in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets = []


@contextlib.contextmanager
def trickling(
    base_url: str, path: str, head_lines: Sequence[tuple[str, str]] = ()
) -> Iterator[Trickler]:
    """50 partial heads and 50 trickled bodies against ``base_url``; all closed after."""
    parts = urlsplit(base_url)
    host = parts.netloc
    extra = "".join(f"{name}: {value}\r\n" for name, value in head_lines)
    # A head that goes on for longer than the test lasts (a header the server waits to end).
    partial = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nX-Slow: " + "s" * 1000).encode()
    full = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {DECLARED_BODY}\r\n{extra}\r\n"
    ).encode("latin-1")
    trickler = Trickler(parts.port or 80, [partial] * SLOW_HEADERS, [full] * SLOW_BODIES)
    try:
        yield trickler
    finally:
        trickler.close()


def fresh_client(base_url: str, **kwargs: object) -> httpx.Client:
    """A client with its own connections, bounded a little past the 2 s budget."""
    return httpx.Client(base_url=base_url, timeout=ANSWERED_WITHIN + 1, trust_env=False, **kwargs)  # type: ignore[arg-type]


def timed(send: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    started = time.monotonic()
    response = send.request(method, path, **kwargs)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert elapsed <= ANSWERED_WITHIN, f"{method} {path} took {elapsed:.2f}s"
    return response


@pytest.mark.req("FAULT-5")
def test_fault_5_slow_clients_do_not_hold_up_the_gateway(
    gateway: Running, alice_session: Session, fake_service: FakeControl
) -> None:
    with trickling(gateway.url, CHAT.path, alice_session.headers()) as trickler:
        for check in range(CHECKS):
            trickler.wait_ticks(2 + check)
            # A new connection each time: the server must still accept and serve one.
            with fresh_client(
                gateway.url,
                cookies=httpx.Cookies(alice_session.cookies),
                headers={"X-CSRFToken": alice_session.csrf},
            ) as client:
                response = timed(client, "POST", CHAT.path, json={"message": f"hi {check}"})
            assert response.status_code == 200, response.text[:300]
            assert response.json()["reply"] == f"echo: hi {check}"
        assert trickler.ticks >= CHECKS + 1


@pytest.mark.req("FAULT-5")
def test_fault_5_slow_clients_do_not_hold_up_the_service(
    service: Running, fake_llm: FakeControl, secret: str
) -> None:
    with trickling(service.url, CHAT.upstream, [("X-Internal-Secret", secret)]) as trickler:
        for check in range(CHECKS):
            trickler.wait_ticks(2 + check)
            with fresh_client(service.url, headers={"X-Internal-Secret": secret}) as client:
                health = timed(client, "GET", "/health")
                chat = timed(client, "POST", CHAT.upstream, json={"message": f"hi {check}"})
            assert health.status_code == 200
            assert health.json() == {"status": "ok"}
            assert chat.status_code == 200, chat.text[:300]
            assert chat.json()["reply"] == f"You said: hi {check}"
        assert trickler.ticks >= CHECKS + 1
