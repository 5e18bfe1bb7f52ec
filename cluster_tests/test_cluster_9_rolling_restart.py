"""OPS-DRAIN-4: a rolling restart of the gateway tier under load loses nothing.

A tier of its own (drain timeout 3 s) in front of a fake service whose streams have a
known length: short ones (about 1 s, within the drain) and long ones (about 8 s, past
it). JSON chat clients and stream clients go through nginx all along, while each host
in turn gets gunicorn's HUP: its master forks new workers and sends its old ones a
TERM. Before each HUP the test waits until a long stream that will outlast the drain
is open on that host, so every restart drains one; then it polls ``/proc`` until the
old workers are gone (how long each took, from the HUP) and the new ones have started.

Judged: every JSON request got the fake's answer (status 200, its ``reply``); every
stream ended with ``done`` after all its tokens, or with exactly one ``event: error``
whose problem has status 503 after a prefix of them; every old worker exited within
the drain timeout + 1 s of the HUP (the master's TERM comes after it, so this bounds
the spec's "of being told to stop" from above). ``CLUSTER_RESTART_ROUNDS`` rolling
restarts (default 2) run under one load.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from cluster_tests.conftest import Cluster
from cluster_tests.observe import BackgroundLoad, forwarded_for, open_stream, poll, post
from cluster_tests.topology import HostRecord, TierRecord
from harness.client import Event, EventReader, Session
from harness.fakes import FakeControl, new_token
from harness.spec import route
from harness.system import Fake, Harness, Running, User

pytestmark = pytest.mark.req("OPS-DRAIN-4")

CHAT = route("chat")
STREAM = route("chat_stream")
#: The tier's drain timeout (GATEWAY_DRAIN_TIMEOUT), and the spec's allowance past it.
DRAIN = 3.0
GRACE = 1.0
#: The fake's streams: one token event every INTERVAL s, then done.
INTERVAL = 0.25
SHORT_EVENTS = 4  # ~1 s: ends within the drain
LONG_EVENTS = 32  # ~8 s: outlasts it
LONG_SECONDS = LONG_EVENTS * INTERVAL
#: A long stream opened less than this before the HUP still runs past the drain.
FRESH = LONG_SECONDS - DRAIN - 2.0
JSON_CLIENTS = 16
STREAM_CLIENTS = 4
ROUNDS = int(os.environ.get("CLUSTER_RESTART_ROUNDS", "2"))
#: How long a host may take from its HUP until its new workers have started.
RESTART_BOUND = DRAIN + GRACE + 20.0
#: How long to wait for a fresh long stream on the host about to restart.
GATE_BOUND = 30.0
POLL = 0.01  # /proc is polled this often while old workers exit


# -- the tier -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def own_tier(harness: Harness, users: list[User]) -> Iterator[tuple[Running, Fake]]:
    # The fake keeps idle connections longer than the forward's nginx (60 s), so that
    # hop never races a close the fake makes: a loss here is the restart's.
    fake = harness.start_fake_service(keep_alive=120.0)
    gateway = harness.start_gateway(fake.url, users, drain_timeout=f"{DRAIN:g}", read_timeout="10")
    yield gateway, fake
    gateway.process.stop()


# -- processes, from /proc ------------------------------------------------------------------------
@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    #: Clock ticks after boot (stat field 22): tells a reused pid apart.
    started: int
    state: str


def _stat(pid: int) -> Proc | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:  # gone
        return None
    fields = text.rsplit(")", 1)[-1].split()  # after "pid (comm)": field 3 on
    return Proc(pid, int(fields[1]), int(fields[19]), fields[0])


def _alive(proc: Proc) -> bool:
    """Whether ``proc`` still runs (a zombie has exited; a new process on its pid is not it)."""
    now = _stat(proc.pid)
    return now is not None and now.started == proc.started and now.state != "Z"


def _children(pid: int) -> list[Proc]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            proc = _stat(int(entry.name))
            if proc is not None and proc.ppid == pid and proc.state != "Z":
                found.append(proc)
    return sorted(found, key=lambda p: p.pid)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _master(host: HostRecord) -> int:
    """The gunicorn master of a host: the launcher's ``ip netns exec`` execs it (same pid)."""
    pid = host.pid
    for _ in range(4):  # should a wrapper fork instead, follow its only child
        if "gunicorn" in _cmdline(pid):
            return pid
        children = _children(pid)
        assert len(children) == 1, f"{host.name}: no gunicorn master under pid {host.pid}"
        pid = children[0].pid
    raise AssertionError(f"{host.name}: no gunicorn master under pid {host.pid}")


# -- what the clients saw -------------------------------------------------------------------------
@dataclass
class Exchange:
    kind: str  # "json", "short" or "long"
    token: str
    started: float
    ended: float | None = None
    outcome: str = ""


@dataclass
class Book:
    """Every request the load sent, open ones included (the clients write, the test reads)."""

    exchanges: list[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, kind: str, token: str) -> Exchange:
        exchange = Exchange(kind, token, time.monotonic())
        with self.lock:
            self.exchanges.append(exchange)
        return exchange

    def close(self, exchange: Exchange, outcome: str) -> str:
        with self.lock:
            exchange.ended, exchange.outcome = time.monotonic(), outcome
        return outcome

    def snapshot(self) -> list[Exchange]:
        with self.lock:
            return [
                Exchange(e.kind, e.token, e.started, e.ended, e.outcome) for e in self.exchanges
            ]


def _chat(session: Session, book: Book) -> str:
    token = new_token()
    exchange = book.open("json", token)
    expected = "echo: " + CHAT.example.json(token)["message"]
    try:
        response = post(session, CHAT, token)
    except httpx.HTTPError as exc:
        return book.close(exchange, f"{type(exc).__name__}: {exc}")
    if response.status_code != 200:
        return book.close(exchange, f"status {response.status_code}: {response.text[:200]}")
    try:
        reply = response.json().get("reply")
    except ValueError:
        reply = None
    if reply != expected:
        return book.close(exchange, f"200 with another answer: {response.text[:200]}")
    return book.close(exchange, "ok")


def _stream(session: Session, book: Book, kind: str, marker: str, events: int) -> str:
    token = f"{marker}-{new_token()}"
    exchange = book.open(kind, token)
    message = STREAM.example.json(token)["message"]
    expected = (["echo ", message] + [f" {n}" for n in range(2, events)])[:events]
    got: list[Event] = []
    reader = EventReader()
    try:
        with open_stream(session, STREAM, token) as response:
            if response.status_code != 200:
                response.read()
                return book.close(exchange, f"status {response.status_code}: {response.text[:200]}")
            for chunk in response.iter_raw():
                got.extend(reader.feed(chunk))
    except httpx.HTTPError as exc:
        return book.close(exchange, f"cut after {_names(got)}: {type(exc).__name__}: {exc}")
    return book.close(exchange, _how_it_ended(got, reader.pending, expected))


def _names(events: list[Event]) -> list[str]:
    return [event.event for event in events]


def _how_it_ended(events: list[Event], pending: bytes, expected: list[str]) -> str:
    """ "done", "drained" (one 503 error event), or what else happened."""
    names = _names(events)
    if pending.strip():
        return f"cut mid-event after {names}: {pending[:80]!r}"
    tokens = [event.json().get("text") for event in events if event.event == "token"]
    if names[-1:] == ["done"] and "error" not in names and tokens == expected:
        return "done"
    if names.count("error") == 1 and names[-1] == "error" and "done" not in names:
        status = events[-1].json().get("status")
        if status == 503 and tokens == expected[: len(tokens)]:
            return "drained"
        return f"error event with status {status} after {len(tokens)} tokens"
    return f"other: {names} tokens {tokens[:4]}..."


def _load(session: Session, book: Book, clients: int, **kinds: tuple[str, int]) -> BackgroundLoad:
    """``clients`` stream clients taking ``kinds`` in turn, each starting at another."""
    order = list(kinds.items())

    def request(client: int, n: int) -> str:
        kind, (marker, events) = order[(client + n) % len(order)]
        return _stream(session, book, kind, marker, events)

    return BackgroundLoad(clients, request, seconds=_load_seconds())


def _load_seconds() -> float:
    return ROUNDS * 2 * (GATE_BOUND + RESTART_BOUND) + 60.0


# -- one host's restart ---------------------------------------------------------------------------
@dataclass
class Restart:
    host: str
    hup: float = 0.0
    #: Old worker pid -> seconds from the HUP to its exit (None: still running at the bound).
    exits: dict[int, float | None] = field(default_factory=dict)
    new_workers: list[int] = field(default_factory=list)
    #: Seconds from the HUP until the new workers had started (None: not within the bound).
    ready_after: float | None = None
    #: The long stream open on the host at the HUP, which the drain must end.
    drained_token: str = ""

    def figures(self, book: list[Exchange]) -> dict[str, object]:
        in_flight = Counter(
            e.kind for e in book if e.started < self.hup and (e.ended or 1e18) > self.hup
        )
        return {
            "host": self.host,
            "old worker exit, s after HUP": {str(p): _round(s) for p, s in self.exits.items()},
            "new workers started, s after HUP": _round(self.ready_after),
            "in flight at HUP": dict(in_flight),
        }


def _when(exchange: Exchange, restarts: list[Restart]) -> str:
    """When a request was sent, from the nearest HUP (the one it may have met)."""
    if not restarts:
        return "no restart"
    nearest = min(restarts, key=lambda r: abs(exchange.started - r.hup))
    return f"{nearest.host} HUP {exchange.started - nearest.hup:+.2f} s"


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 2)


def _fresh_long_stream_on(
    address: str, book: Book, fake: FakeControl, marker: str
) -> Callable[[], str | None]:
    """A check: the token of a long stream open on ``address`` that will outlast the drain."""

    def check() -> str | None:
        now = time.monotonic()
        fresh = {
            e.token
            for e in book.snapshot()
            if e.kind == "long" and e.ended is None and now - e.started < FRESH
        }
        if not fresh:
            return None
        for record in fake.requests(marker):
            token = next((t for t in fresh if t in record["body"]), None)
            if token and not record["completed"] and address in forwarded_for([record]):
                return token
        return None

    return check


def _new_workers_started(
    host: HostRecord, master: int, old: list[Proc], log_from: int
) -> list[int]:
    """The new workers' pids once each has logged its start-up (uvicorn's lines); else [].

    uvicorn logs "Started server process [pid]", then "Application startup complete."
    without the pid (the gateway's logging config has no pid field): every new pid
    started, and as many start-ups completed since the HUP (old workers only shut down).
    """
    workers = _children(master)
    if len(workers) != len(old) or {w.pid for w in workers} & {o.pid for o in old}:
        return []
    with open(host.log, "rb") as log:
        log.seek(log_from)
        text = log.read().decode("utf-8", errors="replace")
    started = {int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", text)}
    complete = text.count("Application startup complete")
    pids = [w.pid for w in workers]
    return pids if set(pids) <= started and complete >= len(pids) else []


def _restart(host: HostRecord, book: Book, fake: FakeControl, long_marker: str) -> Restart:
    restart = Restart(host.name)
    master = _master(host)
    old = _children(master)
    assert old, f"{host.name}: gunicorn master {master} has no workers"
    check = _fresh_long_stream_on(host.address, book, fake, long_marker)
    found: list[str] = []

    def fresh_stream() -> bool:
        token = check()
        if token:
            found.append(token)
        return bool(token)

    poll(fresh_stream, within=GATE_BOUND, every=0.05, what=f"a long stream open on {host.name}")
    restart.drained_token = found[0]
    log_from = Path(host.log).stat().st_size
    restart.hup = time.monotonic()
    os.kill(master, signal.SIGHUP)
    # Each old worker's exit, to within POLL: a deadline and a count bound the loop.
    running = {proc.pid: proc for proc in old}
    deadline = restart.hup + DRAIN + GRACE + 10.0
    for _ in range(int((deadline - restart.hup) / POLL) + 1):
        for pid, proc in list(running.items()):
            if not _alive(proc):
                restart.exits[pid] = time.monotonic() - restart.hup
                del running[pid]
        if not running or time.monotonic() > deadline:
            break
        time.sleep(POLL)  # a poll interval, not synchronisation
    restart.exits.update({pid: None for pid in running})
    if running:
        return restart

    def started() -> bool:
        restart.new_workers = _new_workers_started(host, master, old, log_from)
        return bool(restart.new_workers)

    try:
        poll(started, within=RESTART_BOUND, every=0.05, what=f"{host.name}'s new workers")
    except AssertionError:
        return restart
    restart.ready_after = time.monotonic() - restart.hup
    with httpx.Client(timeout=5.0, trust_env=False) as client:  # and the host answers
        assert client.get(f"{host.url}/api/health/").status_code == 200
    return restart


def _nginx_errors(record: TierRecord, since: int) -> list[str]:
    with open(record.error_log, "rb") as log:
        log.seek(since)
        lines = log.read().decode("utf-8", errors="replace").splitlines()
    return [line for line in lines if "[error]" in line or "[warn]" in line]


# -- the test -------------------------------------------------------------------------------------
def test_ops_drain_4_a_rolling_restart_under_load_loses_nothing_and_old_workers_exit_in_time(
    cluster: Cluster, own_tier: tuple[Running, Fake], alice: User, bob: User, findings: dict
) -> None:
    gateway, fake = own_tier
    tier = cluster.tier(gateway)
    control = fake.control
    short = control.behave(events=SHORT_EVENTS, interval=INTERVAL)
    long = control.behave(events=LONG_EVENTS, interval=INTERVAL)
    book = Book()
    chatter, streamer = Session.of(gateway.url, bob), Session.of(gateway.url, alice)
    chats = BackgroundLoad(JSON_CLIENTS, lambda c, n: _chat(chatter, book), seconds=_load_seconds())
    streams = _load(
        streamer, book, STREAM_CLIENTS, long=(long, LONG_EVENTS), short=(short, SHORT_EVENTS)
    )
    errors_from = Path(tier.error_log).stat().st_size
    restarts: list[Restart] = []
    started = time.monotonic()
    chats.start()
    streams.start()
    try:
        poll(lambda: chats.total() >= 20, within=20, every=0.05, what="JSON load under way")
        for _ in range(ROUNDS):
            for host in tier.hosts:
                restarts.append(_restart(host, book, control, long))
                if restarts[-1].ready_after is None:
                    break
            else:
                continue
            break
        # Some load after the last restart, on the new workers only.
        mark = chats.total()
        poll(lambda: chats.total() >= mark + 20, within=20, every=0.05, what="load afterwards")
    finally:
        chats.stop(within=15)
        streams.stop(within=LONG_SECONDS + 15)
    took = time.monotonic() - started
    exchanges = book.snapshot()
    nginx = _nginx_errors(tier, errors_from)
    json_sent = [e for e in exchanges if e.kind == "json"]
    lost = [e for e in json_sent if e.outcome != "ok"]
    stream_ends = Counter(
        (e.kind, e.outcome if e.outcome in ("done", "drained") else "other")
        for e in exchanges
        if e.kind != "json"
    )
    others = Counter(
        e.outcome for e in exchanges if e.kind != "json" and e.outcome not in ("done", "drained")
    )
    by_token = {e.token: e for e in exchanges}
    findings["OPS-DRAIN-4"] = {
        "rolling restarts": ROUNDS,
        "drain timeout, s": DRAIN,
        "seconds under load": round(took, 1),
        "JSON requests": {"sent": len(json_sent), "lost": len(lost)},
        "JSON losses": dict(Counter(e.outcome[:120] for e in lost)),
        "JSON losses, when": [_when(e, restarts) for e in lost],
        "streams": {f"{kind} {end}": n for (kind, end), n in sorted(stream_ends.items())},
        "streams ended otherwise": dict(others),
        "restarts": [r.figures(exchanges) for r in restarts],
        "balancer errors": nginx[:20],
    }
    # The old workers went, in time.
    for restart in restarts:
        for pid, seconds in restart.exits.items():
            assert seconds is not None, f"{restart.host}: old worker {pid} still ran"
            assert seconds <= DRAIN + GRACE, (
                f"{restart.host}: old worker {pid} exited {seconds:.2f} s after the HUP"
            )
        assert restart.ready_after is not None, f"{restart.host}: no new workers started"
    assert len(restarts) == ROUNDS * len(tier.hosts)
    # No JSON request lost, no stream ended otherwise.
    assert not lost, (
        f"{len(lost)} of {len(json_sent)} JSON requests lost: "
        f"{Counter(e.outcome[:200] for e in lost)}; balancer: {nginx[:10]}"
    )
    assert not others, f"streams that ended otherwise: {others}; balancer: {nginx[:10]}"
    # The load overlapped each restart: a long stream open on the host was drained, and
    # JSON requests were sent while its workers were replaced.
    for restart in restarts:
        assert by_token[restart.drained_token].outcome == "drained", (
            f"{restart.host}: the long stream open at the HUP ended "
            f"{by_token[restart.drained_token].outcome!r}"
        )
        window = [
            e
            for e in json_sent
            if restart.hup <= e.started <= restart.hup + (restart.ready_after or 0.0)
        ]
        assert window, f"{restart.host}: no JSON request during the restart"
    assert stream_ends[("short", "done")] >= 1, stream_ends
    assert stream_ends[("long", "done")] >= 1, stream_ends
