"""The ASGI layers around Django: lifespan, edge, body limit and the fast path."""
