"""Broken on purpose: the service's stream route skips the secret check (SVC-AUTH-1)."""

from starlette.types import Receive, Scope, Send

from fastapi_service import main
from fastapi_service.core import middleware
from fastapi_service.core.middleware import InternalSecretMiddleware


class _SkipsStreamRoute(InternalSecretMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/chatbot/stream/":
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


# install_auth (called by create_app) picks the class from its own module.
middleware.InternalSecretMiddleware = _SkipsStreamRoute  # type: ignore[misc]
app = main.create_app()
