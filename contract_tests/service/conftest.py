"""Fixtures of the service suite (candidates for the shared harness)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from harness.client import http_client
from harness.processes import ManagedProcess
from harness.system import Harness, Running


@pytest.fixture
def anon_client(service: Running) -> Iterator[httpx.Client]:
    """A client of the service that sends no secret."""
    with http_client(service.url) as client:
        yield client


@pytest.fixture
def spawn_service(harness: Harness) -> Iterator[Callable[..., tuple[ManagedProcess, str]]]:
    """Spawn a service without waiting for it (for refuses-to-start tests); always stopped."""
    started: list[ManagedProcess] = []

    def spawn(llm_url: str, **knobs: str) -> tuple[ManagedProcess, str]:
        process, url, _ = harness.service_process(llm_url, **knobs)
        started.append(process)
        return process, url

    yield spawn
    for process in started:
        process.stop()


@pytest.fixture
def hidden(harness: Harness, secret: str) -> tuple[str, str]:
    """What no response may show (PROB-2): the shared secret and the LLM API key."""
    return secret, harness.llm_api_key
