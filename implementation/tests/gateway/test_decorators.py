"""gateway/auth/decorators.py: a session that cannot be read now is a 503, not a 500."""

from __future__ import annotations

import json

import pytest
from django.db import OperationalError
from django.test import RequestFactory

from gateway.auth.decorators import api_view


class _Unreadable:
    """A request user that cannot be loaded: the pool timed out."""

    async def __call__(self):
        raise OperationalError("couldn't get a connection after 10.00 sec")


@pytest.mark.asyncio
async def test_a_session_the_database_cannot_read_now_is_a_503_problem():
    async def view(request):
        raise AssertionError("the view must not run")

    request = RequestFactory().post("/api/chat/")
    request.auser = _Unreadable()
    response = await api_view(methods=["POST"], login=True)(view)(request)
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "1"
    body = json.loads(response.content)
    assert body["status"] == 503
    assert "10.00 sec" not in body["detail"]  # nothing of the database's own message leaks


def test_the_sync_views_answer_503_too():
    class User:
        @property
        def is_authenticated(self):
            raise OperationalError("connection refused")

    request = RequestFactory().post("/api/legacy/chat/")
    request.user = User()
    response = api_view(methods=["POST"], login=True)(lambda request: None)(request)
    assert response.status_code == 503
