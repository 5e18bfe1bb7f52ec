"""CLUSTER-1: the contract's gateway and e2e requirements hold through the balancer.

The contract suite runs in its own pytest process against ``cluster.toml``, whose
components are whole tiers (two hosts, two workers each, nginx in front); the
plugin ``cluster_tests.contract_subset`` keeps the tests that talk to the session's
gateway and chain. Its report lands next to this run's logs.
"""

from __future__ import annotations

import json

import pytest

from cluster_tests.conftest import Cluster
from harness.plug import Plug
from harness.runner import run_suites

pytestmark = pytest.mark.req("CLUSTER-1")

#: Fewer than this many contract tests run through the balancer means the subset rule
#: dropped what it should keep (the subset is about 290 of the gateway/e2e suites' 348).
AT_LEAST = 250


def test_cluster_1_the_contract_holds_through_the_balancer(cluster: Cluster, plug: Plug) -> None:
    report_dir = cluster.run_dir / "contract"
    done = run_suites(
        ("contract_tests/gateway", "contract_tests/e2e"),
        impl=plug.path,
        report_dir=report_dir,
        extra=("-p", "cluster_tests.contract_subset", "-q"),
        capture=True,
        timeout=1200,
    )
    tail = "\n".join(done.stdout.splitlines()[-30:])
    assert done.returncode == 0, f"the contract failed through the balancer:\n{tail}"
    tests = json.loads((report_dir / "contract.json").read_text(encoding="utf-8"))["tests"]
    assert tests["passed"] >= AT_LEAST, f"only {tests} contract tests ran through the balancer"
