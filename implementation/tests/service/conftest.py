"""Fixtures for the service's unit tests: an app with a mocked LLM.

The LLM is mocked with respx at the transport layer, so the service's real
`httpx.AsyncClient` (built in the app's lifespan) is exercised. The base URL is on
loopback and a closed port, so a request that escaped the mock could not go anywhere.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import respx

# The tests run from the repository root too: make `fastapi_service` importable.
IMPLEMENTATION = Path(__file__).resolve().parents[2]
if str(IMPLEMENTATION) not in sys.path:
    sys.path.insert(0, str(IMPLEMENTATION))

from fastapi import FastAPI  # noqa: E402

from fastapi_service.core.config import Settings  # noqa: E402
from fastapi_service.main import create_app  # noqa: E402

from .helpers import SECRET, make_settings  # noqa: E402


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def llm() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


@pytest_asyncio.fixture
async def client(app: FastAPI, llm: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app (lifespan run) that sends the current secret."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://service.test",
            headers={"X-Internal-Secret": SECRET},
        ) as http,
    ):
        yield http
