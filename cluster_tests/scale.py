"""CLUSTER-8's figures: what sharing state costs, and how the gateway scales with workers.

One run measures, on this machine, every *target* with the same client and the same
upstream (the fake service, one uvicorn process, keep-alive 75 s):

- small authenticated chat: closed loop, ``CHAT_CONNECTIONS`` connections (wrk when
  installed, else harness/load.py), after a warm-up; ``CHAT_ROUNDS`` short rounds per
  target, the targets taking turns (all started, the others idle), and the median
  kept: on a shared 2-core machine one long run per target drifts by ±20 %;
- bursts of N concurrent 1-s streams (the fake sends ``STREAM_EVENTS`` token events
  ``STREAM_INTERVAL`` apart, then ``done``): N requests written at once on N open
  connections, timed until the last ``done`` is read; then, after a quiet second, the
  same burst again on the same client connections, counting the TCP connections the
  upstream accepted meanwhile (the fake's ``/_control/connections``).

The targets: the gateway started through the plug file (cluster.toml, i.e.
cluster_tests/launch.py) with ``--loopback`` (one gunicorn on 127.0.0.1, N workers,
nothing in front) with or without its shared state; nginx straight to the service
(harness/nginx.py): the ceiling of a proxy; and the client straight to the service:
the floor set by the client and the upstream alone on the same cores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import load, loadgen, nginx, wrk
from harness.client import Session
from harness.fakes import FakeControl
from harness.plug import Component
from harness.processes import LOOPBACK, free_port
from harness.spec import route
from harness.system import Fake, Harness, Running, User

TIMES = "\u00d7"  # the multiplication sign
DASH = "\u2013"  # en dash, for ranges
CHAT = route("chat")
STREAM = route("chat_stream")

#: The fake's stream: STREAM_EVENTS token events STREAM_INTERVAL apart, then done: 1 s.
#: Few events: the fake (one Python process) costs CPU per event on the cores the
#: gateway uses; with 10 events 0.1 s apart the client and the fake alone took 4.6-6.5 s
#: for 5,000 streams here, hiding what the gateway costs.
STREAM_EVENTS = 2
STREAM_INTERVAL = 0.5
CHAT_CONNECTIONS = 64
CHAT_ROUNDS = 3
CHAT_SECONDS = 3.0
CHAT_WARMUP = 1.0
BURSTS = (1000, 5000)
#: The quiet gap between two bursts: the measured condition, not a synchronisation.
QUIET_SECONDS = 1.0
#: Client deadline per 1-s stream: generous (the gateway's own pool and read timeouts
#: are 10 s), the wall time is what is reported; a failing gateway fails within it.
BURST_LIMIT = {1000: 15.0, 5000: 20.0}
#: The service's idle keep-alive (the fake's ``--keep-alive``), told to the gateway.
SERVICE_KEEPALIVE = 75
#: Room for the largest burst in one wave (HTTP/1.1: a live stream holds a connection).
GATEWAY_KNOBS = {
    "max_connections": "6000",
    "max_keepalive": "6000",
    "pool_timeout": "10",
    "read_timeout": "10",
    "connect_timeout": "5",
    # One user drives every request: its limits must not be what is measured.
    "max_streams_per_user": "100000",
    "chat_rate": "100000000/m",
    "quiz_rate": "100000000/m",
}
#: nginx's descriptors (clients and upstreams both count) and idle upstream connections.
NGINX_NOFILE = 20000
NGINX_KEEPALIVE = 6000
#: nginx's idle upstream keep-alive: below the service's, like the gateway's pool (60 s).
NGINX_KEEPALIVE_TIMEOUT = 60


@dataclass(frozen=True)
class Variant:
    """One way to run the gateway for the figures."""

    key: str
    label: str
    workers: int
    shared: bool


VARIANTS = (
    Variant("local-1", "1 worker, in-process state (SQLite, per-process limits)", 1, False),
    Variant("shared-1", "1 worker, Redis + PostgreSQL", 1, True),
    Variant("shared-2", "2 workers, Redis + PostgreSQL", 2, True),
)
ANCHOR_KEY = "nginx"
ANCHOR_LABEL = "nginx straight to the service (no gateway): the ceiling"
DIRECT_KEY = "direct"
DIRECT_LABEL = "client straight to the service (no proxy): the floor"


@dataclass(frozen=True)
class Target:
    """Where the client sends chat and stream requests, and what it sends with them."""

    key: str
    label: str
    port: int
    headers: tuple[tuple[str, str], ...] = ()
    chat_path: str = CHAT.path
    stream_path: str = STREAM.path
    #: Stops what serves it (nothing for the service itself); may be called again.
    stop: Callable[[], object] = field(default=lambda: None, compare=False)

    def post(self, path: str, message: str) -> bytes:
        body = json.dumps({"message": message}, separators=(",", ":")).encode()
        headers = (("Content-Type", "application/json"), *self.headers)
        host = f"{LOOPBACK}:{self.port}"
        return loadgen.build_request("POST", path, host=host, headers=headers, body=body)


# -- starting what is measured -------------------------------------------------------------------
def launcher_component(base: Component, variant: Variant) -> Component:
    """cluster.toml's gateway, run by the launcher on loopback with ``variant``'s state."""
    if "cluster_tests.launch" not in base.command:
        raise ValueError(f"the plug's gateway is not cluster_tests/launch.py: {base.command}")
    command = [*base.command, "--loopback", "--workers", str(variant.workers)]
    setup = base.setup
    if not variant.shared:
        command.append("--no-shared")
        setup = tuple(
            (*c, "--no-shared") if "cluster_tests.launch" in c and "prepare" in c else c
            for c in base.setup
        )
    env = {**base.env, "SERVICE_KEEPALIVE_TIMEOUT": str(SERVICE_KEEPALIVE)}
    return dataclasses.replace(base, command=tuple(command), setup=setup, env=env)


@contextmanager
def gateway_target(
    harness: Harness, fake: Fake, user: User, variant: Variant
) -> Iterator[tuple[Target, Running]]:
    """The gateway as ``variant``, logged in as ``user``; stopped on exit."""
    component = launcher_component(harness.plug.gateway, variant)
    running = harness.start_gateway(fake.url, [user], component=component, **GATEWAY_KNOBS)

    def stop() -> None:
        running.process.stop(timeout=10.0)

    try:
        headers = Session.of(running.url, user).headers()
        yield Target(variant.key, variant.label, running.port, headers, stop=stop), running
    finally:
        stop()


def direct_target(harness: Harness, fake: Fake) -> Target:
    """The fake service itself, with the shared secret (the service's own paths)."""
    return Target(
        DIRECT_KEY,
        DIRECT_LABEL,
        _port(fake.url),
        (("X-Internal-Secret", harness.secret),),
        chat_path=CHAT.upstream,
        stream_path=STREAM.upstream,
    )


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@contextmanager
def nginx_target(harness: Harness, fake: Fake) -> Iterator[Target]:
    """nginx (1 worker) in front of the fake service, adding the secret; stopped on exit."""
    binary = nginx.find_nginx()
    if binary is None:
        raise RuntimeError("nginx is not installed")
    directory = Path(tempfile.mkdtemp(prefix="pxc-scale-nginx-"))
    directory.chmod(0o755)  # its workers may run as another user
    port = free_port()
    try:
        nginx.write_config(
            directory,
            port=port,
            upstream_port=_port(fake.url),
            secret=harness.secret,
            nofile=NGINX_NOFILE,
            keepalive=NGINX_KEEPALIVE,
            keepalive_timeout=NGINX_KEEPALIVE_TIMEOUT,
        )
        process = nginx.start_nginx(binary, directory, port=port, log=harness.run_dir / "nginx.log")

        def stop() -> None:
            process.stop(timeout=5.0)

        try:
            yield Target(ANCHOR_KEY, ANCHOR_LABEL, port, stop=stop)
        finally:
            stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # the config holds the secret


# -- measuring ----------------------------------------------------------------------------------
@dataclass
class Figures:
    """What one target measured."""

    key: str
    label: str
    chat: dict[str, Any] = field(default_factory=dict)
    bursts: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        """Every request of the target that did not succeed, described."""
        found = []
        if self.chat.get("errors_all_rounds") or not self.chat.get("requests"):
            found.append(f"{self.key}: small chat {self.chat}")
        for count, pair in self.bursts.items():
            for which in ("first", "second"):
                if pair[which]["failed"]:
                    found.append(f"{self.key}: {count:,} x 1 s, {which} burst {pair[which]}")
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "chat": self.chat,
            "bursts": {str(n): pair for n, pair in self.bursts.items()},
            "notes": self.notes,
        }


def measure_chats(targets: list[Target], fake: FakeControl) -> dict[str, dict[str, Any]]:
    """Small-chat figures of every target: ``CHAT_ROUNDS`` rounds, the targets in turn.

    Each round of a target runs wrk for ``CHAT_WARMUP`` s, then measures for
    ``CHAT_SECONDS`` s; the target's figures are its median round (by req/s).
    """
    rounds: dict[str, list[dict[str, Any]]] = {t.key: [] for t in targets}
    for _ in range(CHAT_ROUNDS):
        for target in targets:
            fake.reset()  # the fake records every request: keep its memory flat
            rounds[target.key].append(measure_chat(target))
    found = {}
    for key, runs in rounds.items():
        ordered = sorted(runs, key=lambda r: r["rps"])
        median = dict(ordered[len(ordered) // 2])
        median["rounds_rps"] = [r["rps"] for r in runs]
        median["requests_all_rounds"] = sum(r["requests"] for r in runs)
        median["errors_all_rounds"] = _merged([r["errors"] for r in runs])
        found[key] = median
    return found


def _merged(counts: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for kind, n in count.items():
            merged[kind] = merged.get(kind, 0) + n
    return merged


def measure_chat(target: Target) -> dict[str, Any]:
    body = json.dumps({"message": "hello scale"}).encode()
    binary = wrk.find_wrk()
    result = wrk.measure(
        LOOPBACK,
        target.port,
        target.chat_path,
        body,
        target.headers,
        wrk=binary,
        connections=CHAT_CONNECTIONS,
        duration=CHAT_SECONDS,
        warmup=CHAT_WARMUP,
    )
    figures = result.to_json()
    figures["client"] = "wrk" if binary else "harness/load.py"
    figures.pop("percentiles_ms", None)
    return figures


def measure_bursts(target: Target, fake: FakeControl) -> dict[int, dict[str, Any]]:
    """Each burst pair of :data:`BURSTS` on ``target``, the fake's records forgotten first.

    A pair with failures ends the target's bursts: a larger one would only fail longer.
    """
    fake.reset()
    token = fake.behave(events=STREAM_EVENTS, interval=STREAM_INTERVAL)
    pairs: dict[int, dict[str, Any]] = {}
    for count in BURSTS:
        pairs[count] = pair = loadgen.run(burst_pair(target, fake, token, count))
        if pair["first"]["failed"] or pair["second"]["failed"]:
            break
    return pairs


async def burst_pair(target: Target, fake: FakeControl, token: str, count: int) -> dict[str, Any]:
    """Two bursts of ``count`` streams on the same client connections, a quiet second apart."""
    raws = [target.post(target.stream_path, token)] * count
    limit = BURST_LIMIT[count]
    connections = await load.open_connections(LOOPBACK, target.port, count)
    try:
        start = await asyncio.to_thread(fake.connections)
        first = await load.burst_on(connections, raws, limit=limit, check=load.stream_done)
        # The quiet second IS the measured condition: idle pooled connections must outlive it.
        await asyncio.sleep(QUIET_SECONDS)
        before = await asyncio.to_thread(fake.connections)
        second = await load.burst_on(connections, raws, limit=limit, check=load.stream_done)
        after = await asyncio.to_thread(fake.connections)
    finally:
        load.close_all(connections)
    return {
        "count": count,
        "first": first.summary(),
        "second": second.summary(),
        "upstream_accepted_first": before["accepted"] - start["accepted"],
        "upstream_open_after_quiet": before.get("open"),
        "upstream_accepted_second": after["accepted"] - before["accepted"],
        "quiet_s": QUIET_SECONDS,
        "client_limit_s": limit,
    }


# -- the report ---------------------------------------------------------------------------------
@dataclass
class Goal:
    text: str
    measured: str
    met: bool | None  # None: not measured

    def to_json(self) -> dict[str, Any]:
        return {"goal": self.text, "measured": self.measured, "met": self.met}


#: Far fewer than N new upstream connections after a quiet second: at most this share.
REUSE_SHARE = 0.1
#: The goal for two workers and 5,000 concurrent 1-s streams (seconds).
BURST_GOAL = 3.0


def goals(results: dict[str, Figures]) -> list[Goal]:
    """CLUSTER-8's three goals, judged on this run's figures."""
    found = []
    local, shared1, shared2 = (results.get(v.key) for v in VARIANTS)
    if local and shared1:
        a, b = local.chat["rps"], shared1.chat["rps"]
        ratio = b / a if a else 0.0
        found.append(
            Goal(
                "Redis-backed admission costs at most 10 % of one worker's small-chat "
                f"throughput: (b) ≥ 0.9 {TIMES} (a)",
                f"(b) {b:,.0f} req/s = {ratio:.2f} {TIMES} (a) {a:,.0f} req/s (medians)",
                ratio >= 0.9,
            )
        )
    if shared2 and 5000 not in shared2.bursts:
        found.append(
            Goal(
                f"2 workers carry a burst of 5,000 concurrent 1-s streams in ≤ {BURST_GOAL:g} s",
                "not run: a smaller burst failed",
                False,
            )
        )
    elif shared2:
        pair = shared2.bursts[5000]
        walls = [pair["first"]["wall_s"], pair["second"]["wall_s"]]
        failed = pair["first"]["failed"] + pair["second"]["failed"]
        floor = results.get(DIRECT_KEY)
        beside = ""
        if floor is not None and 5000 in floor.bursts:
            f_pair = floor.bursts[5000]
            beside = (
                f"; the client and the service alone (the floor): "
                f"{f_pair['first']['wall_s']:.2f} s and {f_pair['second']['wall_s']:.2f} s"
            )
        found.append(
            Goal(
                f"2 workers carry a burst of 5,000 concurrent 1-s streams in ≤ {BURST_GOAL:g} s "
                "(both bursts)",
                f"(c) {walls[0]:.2f} s and {walls[1]:.2f} s after a quiet second, "
                f"{failed} failed{beside}",
                max(walls) <= BURST_GOAL and failed == 0,
            )
        )
    for figures in (results[v.key] for v in VARIANTS if v.key in results):
        for count, pair in figures.bursts.items():
            new = pair["upstream_accepted_second"]
            found.append(
                Goal(
                    f"{figures.key}: a burst of {count:,} after a quiet second opens far fewer "
                    f"than {count:,} new upstream connections (≤ {REUSE_SHARE:.0%})",
                    f"{new:,} new; {pair['upstream_open_after_quiet']:,} open at the service "
                    f"after the quiet second ({pair['upstream_accepted_first']:,} opened by "
                    "the burst before)",
                    new <= count * REUSE_SHARE,
                )
            )
    return found


def _seconds(pair: dict[str, Any], which: str) -> str:
    run = pair[which]
    failed = f", **{run['failed']} failed** {run['errors']}" if run["failed"] else ""
    return f"{run['wall_s']:.2f}{failed}"


def _chat_cell(f: Figures, base: Figures | None, anchor: Figures | None) -> str:
    chat = f.chat
    rel = []
    if base is not None and f.key != base.key and base.chat.get("rps"):
        rel.append(f"{chat['rps'] / base.chat['rps']:.2f}{TIMES} (a)")
    if anchor is not None and f.key != anchor.key and anchor.chat.get("rps"):
        rel.append(f"{chat['rps'] / anchor.chat['rps']:.2f}{TIMES} (d)")
    spread = DASH.join(f"{x:,.0f}" for x in (min(chat["rounds_rps"]), max(chat["rounds_rps"])))
    errors = chat.get("errors_all_rounds")
    return (
        f"**{chat['rps']:,.0f}** ({spread}; {chat['p50_ms']:.1f} / {chat['p99_ms']:.1f} ms)"
        + (f", {', '.join(rel)}" if rel else "")
        + (f", **errors {errors}**" if errors else "")
    )


def table(results: dict[str, Figures], order: list[str]) -> list[str]:
    anchor = results.get(ANCHOR_KEY)
    base = results.get(VARIANTS[0].key)
    head = [
        "| | small chat req/s: median (range of rounds; p50 / p99 of the median round) | "
        f"1,000 {TIMES} 1 s: s (after 1 s quiet) | 5,000 {TIMES} 1 s: s (after 1 s quiet) | "
        "new upstream connections in the 2nd burst (in the 1st): 1,000 / 5,000 |",
        "|---|---|---|---|---|",
    ]
    rows = []
    for letter, key in zip("abcde", order, strict=False):
        f = results[key]
        cells = [_chat_cell(f, base, anchor)]
        for count in BURSTS:
            pair = f.bursts.get(count)
            cells.append(
                "not run"
                if pair is None
                else f"{_seconds(pair, 'first')} ({_seconds(pair, 'second')})"
            )
        conns = [
            f"{pair['upstream_accepted_second']:,} ({pair['upstream_accepted_first']:,})"
            for pair in (f.bursts[n] for n in BURSTS if n in f.bursts)
        ]
        cells.append(" / ".join(conns) if key != DIRECT_KEY else "— (no pool)")
        rows.append(f"| ({letter}) {f.label} | " + " | ".join(cells) + " |")
    return head + rows


def write_report(
    directory: Path, results: dict[str, Figures], order: list[str], setup: dict[str, Any]
) -> tuple[Path, Path]:
    """``cluster.md`` and ``cluster.json`` in ``directory``."""
    judged = goals(results)
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "requirement": "CLUSTER-8",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "setup": setup,
        "order": order,
        "results": {key: results[key].to_json() for key in order},
        "goals": [g.to_json() for g in judged],
    }
    json_path = directory / "cluster.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Cluster figures (CLUSTER-8)",
        "",
        f"One run of `cluster_tests/test_cluster_8_scale.py`, {data['when']}, "
        f"{setup['machine']}: client, gateway, service, Redis and PostgreSQL all on these "
        "cores. Every figure is from this run; compare within a column. "
        f"`reports/cluster.json` has every figure.",
        "",
        *table(results, order),
        "",
        "- *1 worker* / *2 workers*: the gateway of `cluster.toml` started by "
        "`cluster_tests/launch.py gateway --loopback --workers N`: one gunicorn "
        "(`deploy/gunicorn.conf.py`) on 127.0.0.1 with N workers, the client straight to "
        "it (no namespace, no nginx in front): one host of the cluster.",
        "- *in-process state*: `--no-shared`, no `DATABASE_URL` and no `REDIS_URL`: SQLite "
        "in the instance's state directory and limits counted in the worker. *Redis + "
        "PostgreSQL*: the run's private servers (the `cluster` fixture).",
        f"- Upstream: `fakes.service`, one uvicorn process, keep-alive {SERVICE_KEEPALIVE} s "
        f"(the gateway gets `SERVICE_KEEPALIVE_TIMEOUT={SERVICE_KEEPALIVE}`); gateway knobs "
        f"{GATEWAY_KNOBS}.",
        f"- Small chat: `POST {CHAT.path}` with the session cookie and `X-CSRFToken` "
        f"((d): no auth; (e): `{CHAT.upstream}` with the secret), {CHAT_CONNECTIONS} "
        f"connections, client {setup['chat_client']}; {CHAT_ROUNDS} rounds per row of "
        f"{CHAT_WARMUP:g} s warm-up + {CHAT_SECONDS:g} s measured, the rows taking turns "
        "(every server started, the others idle); the median round is shown.",
        f"- N {TIMES} 1 s: N concurrent `POST {STREAM.path}` on N open client connections "
        f"(one Python asyncio client); the fake sends {STREAM_EVENTS} token events "
        f"{STREAM_INTERVAL:g} s apart, then `done`; the time from the first request written "
        "to the last `done` read. Then "
        f"{QUIET_SECONDS:g} s quiet and the same burst again on the same client connections "
        "(in brackets). *New upstream connections*: TCP connections the fake service "
        "accepted during the second burst (during the first in brackets); a pool that "
        "kept its connections through the quiet second opens only what the second burst "
        "needs beyond the first one's peak.",
        f"- (d): {setup['nginx']}.",
        "- (e): the same client straight to the fake service: what the client and the "
        "upstream cost alone on these cores; no proxy can beat it here.",
        "",
        "## Goals (CLUSTER-8, SHOULD: measured; only generous bounds are asserted)",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
        *(
            f"| {g.text} | {g.measured} | {'—' if g.met is None else ('yes' if g.met else 'no')} |"
            for g in judged
        ),
        "",
        "Asserted: every request of every run succeeded; "
        f"(b) ≥ {setup['asserted_ratio']} {TIMES} (a).",
    ]
    notes = [n for key in order for n in results[key].notes]
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    md_path = directory / "cluster.md"
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md_path, json_path
