"""SOAK-1: 60 s of 200 clients mixing every kind of request and upstream fault.

See soak_tests/README.md for the mix, the expectations and the growth rule.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from harness import loadgen
from harness.client import Session
from harness.plug import Plug
from harness.processes import LOOPBACK
from harness.sampling import ProcessTree
from harness.system import Fake, Running
from soak_tests import metrics
from soak_tests.conftest import SoakConfig
from soak_tests.mix import BEHAVIOURS, DROP_MATCH, KINDS, Context
from soak_tests.report import write_report
from soak_tests.runner import Tally, run_clients

EXPECTED = {
    "chat": "200 JSON reply",
    "stream": "200 SSE ending in done",
    "upload": "200 JSON reply",
    "quiz": "200 quiz of 3",
    "abort": "200 SSE, left after 1st event",
    "fault_500": "502 problem",
    "fault_drop": "200 SSE ending in error",
    "fault_hang": "504 problem",
}
RULE = (
    "warm-up = first 20 % of the load; reference = median of the samples in 20-40 %; "
    "end = over the samples in 60-100 %, the max for RSS and the median for threads and fds "
    "(gauges of the work in flight: see soak_tests/README.md); fds = open descriptors "
    "other than established TCP connections (all_fds and connections are shown, not judged); "
    "growth = (end - reference) / reference must be "
    f"< 10 %, or, where 10 % of the reference is below the floor ({metrics.FLOORS['rss'] // 2**20}"
    f" MiB RSS, {metrics.FLOORS['threads']} threads, {metrics.FLOORS['fds']} fds), "
    "end - reference must be below the floor"
)


def _upstream_open(fake: Fake, within: float) -> int | None:
    """Requests the fake still serves (neither completed nor aborted), polled for ``within`` s.

    The fake cuts ``fault_drop`` streams itself (neither flag is set on them): not counted.
    Only the fake's last 5,000 records are seen, which covers the end of the run.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            records = fake.control.requests()
        except httpx.HTTPError:
            return None  # the fake is gone: the report says so, the run's outcome stands
        open_now = sum(
            1
            for r in records
            if not r["completed"] and not r["aborted"] and r["match"] != DROP_MATCH
        )
        if open_now == 0 or time.monotonic() >= deadline:
            return open_now
        time.sleep(0.1)  # poll interval, not synchronisation


def _settled(tree: ProcessTree, samples: list[metrics.Sample]) -> dict[str, int]:
    """The gateway's resources once idle again: fds polled (up to 5 s) back to the idle count.

    The clients' sockets are closed when the load ends, but the gateway sees the closes a
    little later; a single measurement at once would count them.
    """
    idle_fds = samples[0].all_fds if samples else 0
    deadline = time.monotonic() + 5.0
    while True:
        sample = metrics.measure(tree)
        if sample.all_fds <= idle_fds + metrics.FLOORS["fds"] or time.monotonic() >= deadline:
            return {m: sample.get(m) for m in (*metrics.METRICS, *metrics.GAUGES)}
        time.sleep(0.1)  # poll interval, not synchronisation


@pytest.mark.req("SOAK-1")
def test_soak_1_mixed_load_with_faults_has_no_unexpected_outcome_and_flat_resources(
    plug: Plug,
    gateway: Running,
    fake: Fake,
    sessions: list[Session],
    soak_config: SoakConfig,
) -> None:
    for token, behaviour in BEHAVIOURS.items():
        fake.control.behave(token, **behaviour)
    read_timeout = float(gateway.knobs["read_timeout"])
    ctxs = [Context(LOOPBACK, gateway.port, s.headers(), read_timeout) for s in sessions]
    duration, clients = soak_config.seconds, soak_config.clients

    tree = ProcessTree(gateway.process.pid)
    sampler = metrics.ResourceSampler(tree).start()
    tally = Tally()
    fatal: str | None = None
    wall = 0.0
    try:
        sampler.wait_for_samples(2)  # the idle baseline, before the first request
        started = time.monotonic()
        try:
            kinds = [k for k in KINDS if k.name in soak_config.kinds]
            load = run_clients(ctxs, clients, duration, soak_config.seed, tally, kinds)
            wall = loadgen.run(load)
        except TimeoutError:
            wall = time.monotonic() - started
            fatal = f"the run passed its deadline ({wall:.1f} s): a client hung"
    finally:
        sampler.stop()
        samples = sampler.relative(tally.t0 or time.monotonic())
        growths = [metrics.growth(m, samples, duration) for m in metrics.METRICS]
        gauges = [metrics.growth(m, samples, duration) for m in metrics.GAUGES]
        upstream_open = _upstream_open(fake, read_timeout + 2.0)
        after_run = _settled(tree, samples)
        failures = _failures(tally, growths, fatal)
        data = _report(
            plug.name,
            len(sessions),
            gateway,
            soak_config,
            tally,
            wall,
            [*growths, *gauges],
            samples,
            fatal,
            failures,
        )
        data["run"]["upstream_open_after_run"] = upstream_open
        for row in data["metrics"]:
            row["after_run"] = after_run[row["metric"]]
        write_report(soak_config.report_dir, data)

    assert fatal is None, fatal
    assert tally.total_unexpected == 0, (
        f"{tally.total_unexpected} unexpected outcomes of {tally.total} requests; first: "
        + "; ".join(f"{u.kind}: {u.reason}" for u in tally.unexpected[:5])
    )
    grown = [f"{g.metric}: {g.why}" for g in growths if not g.ok]
    assert not grown, "gateway resources grew after warm-up: " + "; ".join(grown)


def _failures(tally: Tally, growths: list[metrics.Growth], fatal: str | None) -> list[str]:
    failures = [fatal] if fatal else []
    if tally.total_unexpected:
        failures.append(f"{tally.total_unexpected} unexpected outcomes")
    failures += [f"{g.metric} grew: {g.why}" for g in growths if not g.ok]
    return failures


def _report(
    plug_name: str,
    users: int,
    gateway: Running,
    config: SoakConfig,
    tally: Tally,
    wall: float,
    growths: list[metrics.Growth],
    samples: list[metrics.Sample],
    fatal: str | None,
    failures: list[str],
) -> dict[str, Any]:
    kinds = tally.per_kind()
    for kind in KINDS:
        kinds[kind.name] = {
            "expected": EXPECTED[kind.name],
            "weight": kind.weight,
            **kinds[kind.name],
        }
    return {
        "requirement": "SOAK-1",
        "passed": not failures,
        "failures": failures,
        "implementation": plug_name,
        "gateway_knobs": {k: v for k, v in gateway.knobs.items() if k not in _PRIVATE},
        "run": {
            "duration_s": config.seconds,
            "wall_s": round(wall, 2),
            "clients": config.clients,
            "users": users,
            "seed": config.seed,
            "kinds": list(config.kinds),
            "requests": tally.total,
            "req_per_s": round(tally.total / wall, 1) if wall else None,
            "unexpected": tally.total_unexpected,
            "fatal": fatal,
        },
        "kinds": kinds,
        "rule": RULE,
        "metrics": [g.to_json() for g in growths],
        "unexpected": [u.to_json() for u in tally.unexpected],
        "samples": [
            {
                "t": round(s.t, 2),
                "rss": s.rss,
                "threads": s.threads,
                "fds": s.fds,
                "all_fds": s.all_fds,
                "connections": s.connections,
            }
            for s in samples
        ],
    }


#: Knob values that are not the report's business (the secret) or only noise.
_PRIVATE = {"secret", "python", "state_dir", "port", "service_url"}
