"""Broken on purpose: a 429's Retry-After is the whole window, not what is left of it (LIMIT-4)."""

from gateway import limits
from lamla.asgi import application

_window = limits.window


def _whole_window(rate: limits.Rate, now: float) -> tuple[int, int]:
    index, _ = _window(rate, now)
    return index, rate.period


limits.window = _whole_window
__all__ = ["application"]
