"""uvicorn's HTTP protocol, but a stopping worker never closes a connection under a request.

uvicorn's graceful shutdown closes every idle keep-alive connection at once, and a busy
one right after its response. A balancer keeps those connections to reuse them (nginx's
upstream ``keepalive``): a request it writes onto one just as the worker closes it gets a
reset, and nginx answers 502 without retrying, since a POST may not be sent twice. In a
rolling restart under load that lost about one JSON request in 2,000 (OPS-DRAIN-4;
cluster_tests/test_cluster_9_rolling_restart.py).

:class:`DrainingProtocol` keeps such a connection open :data:`IDLE_GRACE` seconds once it
is idle: a request that comes meanwhile is answered, with ``Connection: close``, then the
connection closes. Measured: no loss in 60 host restarts with 0.5 s, losses with 0.25 s.

It relies on uvicorn's httptools protocol internals (``cycle``, ``pipeline``,
``_unset_keepalive_if_required``, ``timeout_keep_alive_handler``), so :func:`problems`
checks their shape and the worker falls back to uvicorn's own protocol when they are off
(tests/deploy/test_protocol.py pins them against the installed uvicorn).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Seconds a stopping worker keeps an idle connection open for a request already sent on it.
IDLE_GRACE = 0.5

_NONE = inspect.Signature.empty
_METHODS = {
    "shutdown": "(self)",
    "on_headers_complete": "(self)",
    "on_response_complete": "(self)",
    "_unset_keepalive_if_required": "(self)",
    "timeout_keep_alive_handler": "(self)",
}


class DrainingProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose :meth:`shutdown` closes only after a grace."""

    draining = False

    def shutdown(self) -> None:
        self.draining = True
        if self.cycle is None or self.cycle.response_complete:
            self._close_after_grace()
        # Else the response goes on; on_response_complete starts the grace.

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered with Connection: close, then closed

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.draining and not self.pipeline:
            self._close_after_grace()

    def _close_after_grace(self) -> None:
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            IDLE_GRACE, self.timeout_keep_alive_handler
        )


def problems() -> Iterator[str]:
    """What the installed uvicorn lacks of what DrainingProtocol overrides or calls."""
    for name, signature in _METHODS.items():
        method = getattr(HttpToolsProtocol, name, None)
        if not callable(method):
            yield f"HttpToolsProtocol.{name} is missing"
        else:
            parameters = inspect.signature(method).replace(
                return_annotation=inspect.Signature.empty
            )
            if str(parameters) != signature:
                yield f"HttpToolsProtocol.{name} takes {parameters}"
