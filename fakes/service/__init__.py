"""Programmable stand-in for the internal FastAPI service, for testing a gateway exactly.

Run it with ``python -m fakes.service --port 8200 [--secret S] [--keep-alive 5]``, or
in-process with :func:`fakes.service.server.build_server`. It answers like the real
service (see spec/service.openapi.yaml) unless a *behaviour* registered through
``POST /_control/behaviours`` matches a token in the raw request body.

Default answers:

- ``GET /health`` -> ``{"status": "ok"}`` (never needs the secret).
- ``POST /chatbot/`` -> ``{"reply": "echo: <message>", "usage": {...}}``.
- ``POST /chatbot/stream/`` -> SSE: token events ``"echo "``, ``<message>``, ``" 2"``,
  ``" 3"``... (``events`` of them, 3 by default), then ``done`` with usage; headers
  ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no``; one chunk per event.
- ``POST /chatbot/file/`` -> ``"file <filename> <size> bytes sha256 <hex>: <message>"``.
- ``POST /quiz/`` -> a valid quiz with ``num_questions`` questions (default 3, at most 100).
- Unknown path -> 404, wrong method -> 405; errors are problem+json. Bodies are read
  leniently: a missing or mistyped field is empty text, never an error.
- With a secret: missing or empty ``X-Internal-Secret`` -> 401; wrong, repeated or
  non-ASCII -> 403 (checked before routing, like the real service's middleware).

Behaviour fields (all optional except ``match``; ``times`` limits the uses). The first
that applies wins, in this order, after ``delay`` (seconds before answering):

- ``close``: the connection is closed at once, before any byte of an answer (a
  server that died between reading the request and answering). Needs the server of
  ``fakes.service.server`` (its protocol hands the app the transport's ``abort``).
- ``hang``: no answer until the client leaves (recorded as aborted), a reset, or 300 s
  (then 504).
- ``malformed``: ``status`` (200) with ``application/json`` and a body that is not JSON.
- a stream, when ``stream`` is true, or on /chatbot/stream/ unless ``stream`` is false
  or the behaviour asks for a plain answer (``body``, ``reply``, ``malformed`` or a
  ``status`` >= 400). Shaped by ``events``, ``interval``, ``event_size``, ``done``,
  ``hold_after``, ``drop_after``, ``partial_after``, ``error_after`` (see streaming.py)
  or ``total_bytes``/``chunk_size`` (exactly N body bytes, filler then ``done``).
- ``body``: sent with ``status`` (200); a string is sent as is (text/plain), anything
  else as JSON (problem+json for a status >= 400).
- ``status`` >= 400: a problem object with that status.
- ``reply``: this JSON object instead of the default answer (with ``status``, 200).

``content_type`` overrides the content type of any of them; ``headers`` (``[[name,
value], ...]``) are added to any of them. What reaches the wire (uvicorn 0.54,
httptools): names are lower-cased; ``Connection``, ``Keep-Alive``, ``Set-Cookie``,
``X-Internal-Secret``, ``X-User-Id``, ``X-Hop`` and the like pass unchanged; a
``Connection`` value containing ``close`` also makes uvicorn close the connection after
the response (and when the request itself said ``Connection: close``, uvicorn adds its
own ``connection: close`` next to a behaviour's ``Connection`` header).
``Content-Length`` and ``Transfer-Encoding`` are refused with 422 because they would
break the framing uvicorn computes. uvicorn adds ``server`` and ``date`` itself.
"""

from fakes.service.app import FakeService, create_app

__all__ = ["FakeService", "create_app"]
