"""A pytest plugin: the contract's gateway and e2e tests that hold through a balancer (CLUSTER-1).

Loaded into the contract suite's own pytest run (``-p cluster_tests.contract_subset``)
with the plug file ``cluster_tests/cluster.toml``, it keeps the tests that talk to
the session's gateway or whole chain and deselects, by rule, those that need
control of one process, and by name the few a rule cannot see, each with its reason.
"""

from __future__ import annotations

import pytest

#: Fixtures that start a gateway or service of their own with other knobs: each would
#: be another whole tier of hosts, and what they check is per process anyway.
OWN_PROCESS_FIXTURES = frozenset({"start_gateway", "start_service"})
#: The session's system, reached through the balancer.
THROUGH_THE_BALANCER = frozenset({"gateway", "e2e_gateway"})

#: Tests a fixture rule cannot see, by node id substring, with why they do not hold here.
NEEDS_ONE_PROCESS: dict[str, str] = {
    "test_gw_flow_1_": "measures the memory of the gateway's one process (here: the launcher), "
    "and two more proxies' socket buffers sit on the path it bounds",
    # The hosts reach a fake on 127.0.0.1 through an nginx forward (cluster_tests/launch.py):
    # what the fake sees of these headers is the forward's doing, not the gateway's.
    "test_gw_proxy_5_": "the forward between hosts and fake drops Connection but not the "
    "headers it names",
    "test_sec_4_an_untrusted_x_forwarded_for_": "the forward between hosts and fake sets "
    "X-Forwarded-For to the host's address",
    # A body the gateway refuses before reading it: uvicorn closes without draining it, so
    # the balancer, still sending, may see a reset and answer 502 instead of the 413 (README,
    # "Deploying"). The rule is the gateway's; the race is the balancer's.
    "too-large-413": "a refused body races the balancer's send (502 instead of 413)",
    "test_gw_proxy_7_json_body_over_1_mib_gives_413": "a refused body races the balancer's send",
    "test_gw_file_2_upload_over_10_mib_gets_413": "a refused body races the balancer's send",
    "test_limit_1_declared_": "a refused body races the balancer's send",
    "test_limit_1_chunked_": "a refused body races the balancer's send",
    "test_limit_2_": "a refused body races the balancer's send, and it measures one process's RSS",
}


def deselect_reason(item: pytest.Item) -> str | None:
    """Why ``item`` does not run through the balancer, or None when it does."""
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & OWN_PROCESS_FIXTURES:
        return "starts a gateway or service of its own"
    if not fixtures & THROUGH_THE_BALANCER:
        return "does not use the session's gateway"
    for name, reason in NEEDS_ONE_PROCESS.items():
        if name in item.nodeid:
            return reason
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        (dropped if deselect_reason(item) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
