"""Reading a request body over ASGI for the fast path: up to a limit, into a spool, or for Django.

A body the fast path reads and then hands over is replayed to Django; the
rest of a refused upload is read and dropped, as Django would have read it.
"""

from __future__ import annotations

from gateway.asgi.types import Message, Receive, Scope
from gateway.proxy.bodies import UploadSpool


async def read_body(scope: Scope, receive: Receive, *, limit: int) -> tuple[bytes, bool] | None:
    """(body, complete): at most ``limit`` bytes, the rest left unread; None if the client left."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit() or int(value) > limit:
                return b"", False  # Django refuses it (413/400); let it read the body
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


def replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """``receive`` for Django: the body read so far, then the rest from the client."""
    replayed = False

    async def replaying() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": not complete}

    return replaying


class BodyReceiver:
    """``receive`` for a request body that remembers whether the body has ended."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.ended = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.ended = True
        return message


async def spool_body(spool: UploadSpool, body: BodyReceiver) -> bool:
    """Feed the request body to ``spool`` as it arrives; False if the client left.

    ``spool.write`` counts the bytes and raises 413 past the upload limit
    (which BodyLimit, lamla/asgi.py, enforces before this too).
    """
    while not body.ended:
        message = await body()
        if message["type"] == "http.disconnect":
            return False
        spool.write(message.get("body", b""))
    return True


async def drop_rest(body: BodyReceiver, *, limit: int) -> bool:
    """Read and drop what is left of a refused body; False if more than ``limit`` is left.

    Django reads the whole body (up to BodyLimit's cut) before its view
    refuses it, and answers on a connection that can carry the next request.
    The fast path does the same rather than leave the client sending into a
    connection that answered already.
    """
    dropped = 0
    while not body.ended:
        if dropped > limit:
            return False
        dropped += len((await body()).get("body", b""))
    return True
