"""Broken on purpose: without the header, the service takes `?secret=` (SVC-AUTH-7)."""

from urllib.parse import parse_qs

from starlette.types import Scope

from fastapi_service import main
from fastapi_service.core import middleware
from fastapi_service.core.middleware import SECRET_HEADER, InternalSecretMiddleware


class _AcceptsSecretInQuery(InternalSecretMiddleware):
    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        # Without the header, a `secret` query parameter stands in for it.
        if not any(name.lower() == SECRET_HEADER for name, _ in scope["headers"]):
            given = parse_qs(scope.get("query_string", b"")).get(b"secret")
            if given:
                scope = {**scope, "headers": [*scope["headers"], (SECRET_HEADER, given[0])]}
        return super()._refusal(scope)


# install_auth (called by create_app) picks the class from its own module.
middleware.InternalSecretMiddleware = _AcceptsSecretInQuery  # type: ignore[misc]
app = main.create_app()
