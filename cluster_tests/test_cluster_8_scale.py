"""CLUSTER-8: sharing state costs little and the gateway scales with workers (measured).

One run, written to ``reports/cluster.md`` and ``reports/cluster.json`` (or
``$CLUSTER_REPORT_DIR``): small-chat throughput and bursts of 1,000 and 5,000
concurrent 1-s streams for (a) 1 worker with in-process state, (b) 1 worker with
Redis + PostgreSQL, (c) 2 workers with Redis + PostgreSQL, (d) nginx straight to the
service (the ceiling of a proxy) and (e) the client straight to the service (the
floor of these cores), all in one run (cluster_tests/scale.py). A SHOULD: the goals
are reported met or not; asserted are only bounds that hold on a noisy 2-core machine:
every request succeeded, and (b) keeps at least half of (a)'s small-chat throughput.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
from pathlib import Path

import pytest

from cluster_tests import scale
from cluster_tests.conftest import Cluster
from harness import nginx, wrk
from harness.system import REPO, Harness, User

pytestmark = pytest.mark.req("CLUSTER-8")

#: Asserted: Redis-backed admission keeps at least this share of (a)'s small-chat req/s.
MIN_SHARED_RATIO = 0.5
#: Descriptors the client needs for the largest burst (one per connection) plus room.
FD_NEEDED = max(scale.BURSTS) + 1024


def test_cluster_8_shared_state_costs_little_and_scales_with_workers(
    cluster: Cluster, harness: Harness, users: list[User]
) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= FD_NEEDED, f"RLIMIT_NOFILE {soft}: the 5,000 burst needs {FD_NEEDED}"
    fake = harness.start_fake_service(keep_alive=scale.SERVICE_KEEPALIVE)
    results: dict[str, scale.Figures] = {}
    with contextlib.ExitStack() as stack:
        targets = [
            stack.enter_context(scale.gateway_target(harness, fake, users[0], variant))[0]
            for variant in scale.VARIANTS
        ]
        targets.append(stack.enter_context(scale.nginx_target(harness, fake)))
        targets.append(scale.direct_target(harness, fake))
        chats = scale.measure_chats(targets, fake.control)
        for target in targets:
            bursts = scale.measure_bursts(target, fake.control)
            target.stop()  # its pooled connections and idle CPU leave the next row alone
            results[target.key] = scale.Figures(target.key, target.label, chats[target.key], bursts)
    order = [target.key for target in targets]
    binary = nginx.find_nginx()
    setup = {
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        "chat_client": "wrk -t2" if wrk.find_wrk() else "harness/load.py (no wrk)",
        "nginx": f"nginx {nginx.nginx_version(binary) if binary else '?'}, 1 worker, "
        f"upstream keepalive {scale.NGINX_KEEPALIVE} (idle {scale.NGINX_KEEPALIVE_TIMEOUT} s), "
        "`proxy_buffering off`, adds the shared secret, maps `/api/chat/` to `/chatbot/`",
        "asserted_ratio": MIN_SHARED_RATIO,
        "run_dir": str(cluster.run_dir),
    }
    report_dir = Path(os.environ.get("CLUSTER_REPORT_DIR", REPO / "reports"))
    md_path, _ = scale.write_report(report_dir, results, order, setup)
    print(md_path.read_text(encoding="utf-8"))

    failures = [line for figures in results.values() for line in figures.failures()]
    assert not failures, "requests failed:\n" + "\n".join(failures)
    local, shared = results["local-1"].chat["rps"], results["shared-1"].chat["rps"]
    assert shared >= MIN_SHARED_RATIO * local, (
        f"1 worker with Redis + PostgreSQL: {shared:,.0f} req/s, below "
        f"{MIN_SHARED_RATIO} x {local:,.0f} req/s with in-process state"
    )
