"""Broken on purpose: the Django views send the wrong X-User-Id (GW-PROXY-3).

Their ``proxy()`` forwards as the next user id (off by one: alice's requests
reach the service as bob's). The ASGI fast path calls ``forward()`` itself and
is unaffected, so only a run with the fast path off (django_path.toml) sees it.
"""

from apps.core import proxy_views
from lamla.asgi import application

_forward = proxy_views.forward


async def _off_by_one(request, route, body):  # type: ignore[no-untyped-def]
    user = await request.auser()
    return await _forward(request, route, user_id=user.pk + 1, body=body)


proxy_views.proxy = _off_by_one
__all__ = ["application"]
