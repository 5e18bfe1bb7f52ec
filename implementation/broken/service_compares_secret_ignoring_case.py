"""Broken on purpose: the service compares the secret ignoring letter case (SVC-AUTH-7)."""

import hmac

from starlette.types import Scope

from fastapi_service import main
from fastapi_service.core import middleware
from fastapi_service.core.middleware import SECRET_HEADER, InternalSecretMiddleware


class _IgnoresCase(InternalSecretMiddleware):
    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        """The reference's check, but both sides lower-cased before the comparison."""
        values = [value for name, value in scope["headers"] if name.lower() == SECRET_HEADER]
        if not values or (len(values) == 1 and not values[0].strip()):
            return 401, "The X-Internal-Secret header is missing or empty."
        if len(values) > 1:
            return 403, "The X-Internal-Secret header must be sent exactly once."
        value = values[0]
        if not value.isascii():
            return 403, "The X-Internal-Secret header is not valid."
        matched = False
        for secret in self.secrets:
            matched |= hmac.compare_digest(value.lower(), secret.lower())
        if not matched:
            return 403, "The X-Internal-Secret header is not valid."
        return None


# install_auth (called by create_app) picks the class from its own module.
middleware.InternalSecretMiddleware = _IgnoresCase  # type: ignore[misc]
app = main.create_app()
