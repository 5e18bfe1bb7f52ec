"""Broken on purpose: SIGTERM does not start the drain; open streams run on (OPS-DRAIN-2)."""

from gateway.lifecycle import draining
from lamla.asgi import application


def _no_drain(timeout: float, drain: draining.Drain = draining.DRAIN) -> None:
    return None


draining.install = _no_drain
__all__ = ["application"]
